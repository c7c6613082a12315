"""Reload through the admin API under load, and no admin API unless it is mounted.

A real uvicorn serves the app behind the pipeline with the admin app mounted beside it; two httpx
clients send requests back to back for a few seconds while ``POST /_plugins/stamp/reload`` loads four
new versions one after the other. Not one request may fail, each client must see the versions in
order (never an older one after a newer), and once the last reload answered every response carries
the last version. Then ``covet-pipe serve`` and uvicorn serving the same app without ``admin_app``
answer ``/_plugins`` with the app's own response: the admin API is off by default.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.admin._apps import STAMP, admin_beside_app
from tests._process import free_port, start_until_ready, stop

TOKEN = "t0ken-for-the-reload-under-load-test-0123"
#: seconds the clients keep sending
LOAD_SECONDS = 3.0
VERSIONS = ["2.0.0", "3.0.0", "4.0.0", "5.0.0"]

PLUGIN = STAMP
APP = admin_beside_app(TOKEN, entry_points=False)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "stamp.py").write_text(PLUGIN.format(version="1.0.0"))
    (tmp_path / "loadapp.py").write_text(APP)
    return tmp_path


@pytest.fixture()
def server(folder: Path) -> Iterator[str]:
    port = free_port()
    proc = start_until_ready([sys.executable, "-m", "uvicorn", "loadapp:app", "--host", "127.0.0.1",
                              "--port", str(port), "--no-access-log"], port, folder, folder / "server.log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


async def _client(base: str, until: float, seen: list[str], failures: list[str]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        while time.monotonic() < until:
            try:
                r = await client.get("/")
            except httpx.HTTPError as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                continue
            if r.status_code != 200 or r.text != "hello":
                failures.append(f"{r.status_code} {r.text[:80]!r}")
            seen.append(r.headers.get("x-stamp", "none"))


async def _reloads(base: str, folder: Path, answers: list[tuple[str, int, str | None]]) -> float:
    """Reload each version in turn; return when the last reload answered (monotonic time)."""
    async with httpx.AsyncClient(base_url=base, timeout=30,
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as admin:
        await asyncio.sleep(0.4)
        for version in VERSIONS:
            (folder / "plugins" / "stamp.py").write_text(PLUGIN.format(version=version))
            r = await admin.post("/_plugins/stamp/reload")
            answers.append((version, r.status_code, r.json().get("version")))
            await asyncio.sleep(0.4)
    return time.monotonic()


def test_reloads_under_load_fail_no_request_and_serve_the_new_version(server: str, folder: Path) -> None:
    async def main() -> tuple[list[list[str]], list[str], list[tuple[str, int, str | None]], int]:
        until = time.monotonic() + LOAD_SECONDS
        seen: list[list[str]] = [[], []]
        failures: list[str] = []
        answers: list[tuple[str, int, str | None]] = []
        clients = [asyncio.create_task(_client(server, until, s, failures)) for s in seen]
        done = await _reloads(server, folder, answers)
        counted = [len(s) for s in seen]
        await asyncio.gather(*clients)
        after = sum(len(s) - n for s, n in zip(seen, counted))
        assert done < until, "the reloads took longer than the load: raise LOAD_SECONDS"
        return seen, failures, answers, after

    seen, failures, answers, after = asyncio.run(main())
    print(f"reload under load: {sum(map(len, seen))} requests in {LOAD_SECONDS} s by 2 clients, "
          f"{len(failures)} failed, {len(VERSIONS)} reloads, {after} requests after the last one")
    assert answers == [(v, 200, v) for v in VERSIONS]
    assert failures == []
    order = ["1.0.0", *VERSIONS]
    for stamps in seen:
        assert len(stamps) >= 20, f"a client made only {len(stamps)} requests"
        ranks = [order.index(s) for s in stamps]
        assert ranks == sorted(ranks), "a client saw an older version after a newer one"
        assert stamps[0] == "1.0.0" and stamps[-1] == "5.0.0"
    # requests made after the last reload answered see the last version only
    assert after > 0 and all(s[-1] == "5.0.0" for s in seen)
    assert set(seen[0]) | set(seen[1]) >= {"1.0.0", "5.0.0"}


PLAIN = """\
from covet_pipe import PluginConfig, PluginManager, wrap

manager = PluginManager(PluginConfig(plugin_paths=["plugins"], entry_points=False))

async def hello(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello " + scope["path"].encode()})

app = wrap(hello, manager)
"""


@pytest.mark.parametrize("server_cmd", ["uvicorn", "covet-pipe"])
def test_a_served_app_has_no_admin_api_unless_it_is_mounted(folder: Path, server_cmd: str) -> None:
    (folder / "plainapp.py").write_text(PLAIN)
    port = free_port()
    if server_cmd == "uvicorn":
        cmd = [sys.executable, "-m", "uvicorn", "plainapp:app", "--host", "127.0.0.1", "--port", str(port)]
    else:
        cmd = [str(Path(sys.executable).parent / "covet-pipe"), "serve", "plainapp:app", "--host", "127.0.0.1",
               "--port", str(port)]
    proc = start_until_ready(cmd, port, folder, folder / "plain.log")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for path in ("/_plugins", "/_plugins/health", "/_plugins/openapi.json"):
                for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}):
                    r = client.get(path, headers=headers)
                    # the app's own answer: no plugin list, no refusal, no bearer challenge
                    assert (r.status_code, r.text) == (200, f"hello {path}")
                    assert "www-authenticate" not in r.headers
            assert client.get("/").headers["x-stamp"] == "1.0.0"     # the pipeline serves
    finally:
        stop(proc)
