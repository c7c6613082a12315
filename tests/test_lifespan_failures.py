"""Lifespan through the pipeline: the app's own failures reach the server, and plugins start again after a
shutdown (a Starlette TestClient used twice), in-process and sandboxed alike."""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import sys
import threading
import warnings
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from covet_pipe import Pipeline, PluginManager, wrap

with warnings.catch_warnings():     # starlette's TestClient asks for httpx2 over httpx; either works here
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient
from tests.test_lifecycle import Tracked

SANDBOXED = Path(__file__).parent / "sandbox" / "plugins" / "benign.py"


async def _crashes_after_startup_received(scope, receive, send):
    assert scope["type"] == "lifespan"
    await receive()
    raise RuntimeError("the database is down")


async def _crashes_on_shutdown(scope, receive, send):
    await receive()
    await send({"type": "lifespan.startup.complete"})
    await receive()
    raise RuntimeError("could not flush the queue")


def _uvicorn_startup(app) -> bool:
    """Run a real uvicorn (lifespan auto, as by default) until it started or gave up; True if it started."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="auto", log_level="info"))
    started = threading.Event()
    done = threading.Event()

    def run():
        try:
            server.run(sockets=[sock])
        except SystemExit:      # uvicorn exits with status 3 on a failed startup
            pass
        finally:
            done.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    while not done.wait(0.01):
        if server.started:
            started.set()
            server.should_exit = True
    t.join(20)
    sock.close()
    return started.is_set()


def test_an_app_crash_in_startup_fails_the_servers_startup_with_its_message(capfd):
    events: list = []
    manager = PluginManager()
    manager.register(Tracked("tracked", events))
    # Alone, uvicorn's auto mode would call this app "lifespan unsupported" and serve; behind the pipeline,
    # which has seen it receive lifespan.startup, the crash is a startup failure.
    assert not _uvicorn_startup(wrap(_crashes_after_startup_received, manager))
    err = capfd.readouterr().err
    assert "ERROR:    RuntimeError: the database is down\n" in err, err     # uvicorn logs the failed message
    assert "Application startup failed. Exiting." in err
    assert events == ["tracked.init", "tracked.shutdown"]   # the plugins did not outlive the failed start
    assert manager.status == "closed"


async def test_an_app_crash_in_shutdown_still_stops_the_plugins_and_reports_shutdown_failed():
    events: list = []
    manager = PluginManager()
    manager.register(Tracked("tracked", events))
    app = wrap(_crashes_on_shutdown, manager)
    sent: list = []
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def receive():
        return inbox.pop(0)

    async def send(message):
        sent.append(message)

    with pytest.raises(RuntimeError, match="could not flush"):
        await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    assert sent == [{"type": "lifespan.startup.complete"},
                    {"type": "lifespan.shutdown.failed", "message": "RuntimeError: could not flush the queue"}]
    assert events == ["tracked.init", "tracked.shutdown"]


def _starlette(manager: PluginManager) -> Starlette:
    async def home(request):
        return PlainTextResponse(request.headers.get("x-seen", "-"))

    app = Starlette(routes=[Route("/", home)])
    app.add_middleware(Pipeline, manager=manager)
    return app


def test_a_testclient_used_twice_serves_both_times_with_plugins_restarted():
    events: list = []
    manager = PluginManager()
    manager.register(Tracked("tracked", events))
    app = _starlette(manager)
    for round_ in (1, 2):
        with TestClient(app) as client:
            r = client.get("/")
            assert (r.status_code, r.headers.get("x-tracked")) == (200, "tracked"), (round_, r.text)
    assert events == ["tracked.init", "tracked.shutdown"] * 2
    # and without a context manager after that: the first request starts them again
    client = TestClient(app)
    assert client.get("/").headers.get("x-tracked") == "tracked"
    assert events[-1] == "tracked.init"


@pytest.mark.skipif(sys.platform != "linux", reason="the sandbox layers are Linux kernel features")
def test_a_sandboxed_plugin_starts_again_on_each_testclient_loop():
    manager = PluginManager()
    app = _starlette(manager)
    pids = []
    for round_ in (1, 2):
        with TestClient(app) as client:     # each TestClient runs its own event loop
            if round_ == 1:
                client.portal.call(functools.partial(manager.load_plugin_from_path, str(SANDBOXED), sandbox=True))
            r = client.get("/")
            assert (r.status_code, r.text) == (200, "sandboxed"), (round_, r.text)
            pids.append(r.headers["x-sandbox-pid"])
    assert pids[0] != pids[1]       # a new helper on the second loop
    with contextlib.suppress(ProcessLookupError):
        os.kill(int(pids[1]), 0)
        pytest.fail("the second helper outlived its shutdown")
