"""Issue 15, transparency of extension messages: the sample app's message sequence, with and without layers.

uvicorn offers none of these extensions, so the app is driven through an ASGI harness whose scope offers
them: the template page sends a push promise (``http.response.push``) and Starlette's template debug
message (``http.response.debug``) before its start; FileResponse sends ``http.response.pathsend`` in place
of a body. Behind ten no-op plugins the server must get the same messages in the same order.
"""

from __future__ import annotations

import pytest

from covet_pipe import wrap
from tests._layers import NOOP_CHAINS, calls_of, manager_with, noop_chain
from tests._wire import drive, normal_messages
from tests.transparency.apps import build_app

PUSH_DEBUG = {"http.response.push": {}, "http.response.debug": {}}
CASES = {
    "template-push-debug": ("/page/Alice", PUSH_DEBUG,
                            ["http.response.push", "http.response.debug", "http.response.start", "http.response.body"]),
    "file-pathsend": ("/file", {"http.response.pathsend": {}}, ["http.response.start", "http.response.pathsend"]),
}


def _normal(messages: list[dict]) -> list[dict]:
    """Comparable messages (see ``normal_messages``), the debug message's template by name and its
    context by keys (it holds the request object of its own run)."""
    out = []
    for m in normal_messages(messages):
        if m["type"] == "http.response.debug":
            info = m["info"]
            m["info"] = {"template": info["template"].name, "context": sorted(info["context"])}
        out.append(m)
    return out


KINDS = [pytest.param(k)
         if k != "hook10" else k for k in NOOP_CHAINS]


async def _compare(kind: str, case: str) -> None:
    path, extensions, types = CASES[case]
    bare, _ = build_app()
    want = _normal(await drive(bare, path, extensions=extensions))
    assert [m["type"] for m in want] == types, "the bare app did not send what this case is meant to exercise"
    app, _ = build_app()
    plugins = noop_chain(kind)
    got = _normal(await drive(wrap(app, manager_with(*plugins)), path, extensions=extensions))
    assert got == want
    assert calls_of(plugins) == [(p.name, 1, 1) for p in plugins], "a no-op layer did not run both phases"


@pytest.mark.parametrize("kind", KINDS)
async def test_push_and_debug_messages_are_identical_behind_ten_noop_layers(kind):
    await _compare(kind, "template-push-debug")


@pytest.mark.parametrize("kind", NOOP_CHAINS)
async def test_pathsend_is_identical_behind_ten_noop_layers(kind):
    await _compare(kind, "file-pathsend")
