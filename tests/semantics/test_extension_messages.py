"""Issue 15, defects 4 and 6 (trailers): ASGI extension messages pass every layer untouched, in order.

uvicorn offers none of these extensions, so the pipeline is driven by an ASGI harness whose scope offers
them (``tests._wire.drive``), as a server that supports them would. What the server gets must be what
the app sent, message for message, except the header the actor adds to the start.

- before the start: ``http.response.push``, ``http.response.debug``, ``http.response.early_hint``;
- the start's ``trailers: True`` and the ``http.response.trailers`` messages after the body;
- after the start: ``http.response.pathsend`` in place of a body.
"""

from __future__ import annotations

import copy

import pytest

from covet_pipe import wrap
from tests._layers import StampCallNext, StampHook, calls_of, layered, manager_with, styles
from tests._wire import drive, normal_messages

PRE_START = [
    {"type": "http.response.push", "path": "/style.css", "headers": [(b"accept", b"text/css")]},
    {"type": "http.response.debug", "info": {"template": "page.html", "context": {"name": "x"}}},
    {"type": "http.response.early_hint", "links": ["</style.css>; rel=preload; as=style"]},
]
START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
BODY = {"type": "http.response.body", "body": b"hello", "more_body": False}
TRAILERS = [
    {"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")], "more_trailers": True},
    {"type": "http.response.trailers", "headers": [(b"x-rows", b"3")], "more_trailers": False},
]
PATHSEND = {"type": "http.response.pathsend", "path": "/etc/hostname"}

EXTENSIONS = {"http.response.push": {}, "http.response.debug": {}, "http.response.early_hint": {},
              "http.response.trailers": {}, "http.response.pathsend": {}}


def script_app(script: list[dict]):
    """An app that reads the request, then sends a deep copy of *script*, message by message."""
    async def app(scope, receive, send):
        assert scope["type"] == "http"
        await receive()
        for message in copy.deepcopy(script):
            await send(message)
    return app


def _stamped(start: dict) -> dict:
    """*start* as the server should get it: the actor's x-stamp added, the rest as the app sent it."""
    return dict(start, headers=[*start["headers"], (b"x-stamp", b"200")])


async def _through(style: str, script: list[dict]) -> tuple[list[dict], list]:
    plugins = layered(style, StampHook, StampCallNext)
    sent = await drive(wrap(script_app(script), manager_with(*plugins)), extensions=EXTENSIONS)
    return normal_messages(sent), plugins




@pytest.mark.parametrize("style", styles())
async def test_messages_before_the_start_pass_through_untouched_in_order(style):
    sent, plugins = await _through(style, [*PRE_START, START, BODY])
    assert [m["type"] for m in sent] == [m["type"] for m in [*PRE_START, START, BODY]]
    assert sent == normal_messages([*PRE_START, _stamped(START), BODY])
    assert calls_of(plugins) == [(p.name, 1, 1) for p in plugins]




@pytest.mark.parametrize("style", styles())
async def test_trailers_flag_and_trailer_messages_pass_through(style):
    start = dict(START, trailers=True)
    sent, _ = await _through(style, [start, BODY, *TRAILERS])
    assert sent[0]["type"] == "http.response.start"
    assert sent[0].get("trailers") is True, "the start lost trailers: True"
    assert sent == normal_messages([_stamped(start), BODY, *TRAILERS])


@pytest.mark.parametrize("style", styles())
async def test_pathsend_after_the_start_passes_through(style):
    sent, _ = await _through(style, [START, PATHSEND])
    assert sent == normal_messages([_stamped(START), PATHSEND])
