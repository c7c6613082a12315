"""Installed as ``tests/protocols/conftest.py`` of uvicorn's unpacked sdist by ``run_uvicorn.py``.

It adds covet-pipe's ``UvicornHTTP`` to the HTTP protocol classes uvicorn's ``test_http.py`` is
parametrized with (a fixture here overrides the one of uvicorn's ``tests/conftest.py``), and gives
that file's ``MockLoop`` what the compiled connection asks of a loop: ``time`` (the mock's clock,
moved forward by ``run_later``), ``call_at``, ``call_soon`` and ``create_future`` (on the running
loop), and ``create_task`` with a ``context``. uvicorn's own classes never call these, so their runs
are unchanged. Not collected by covet-pipe's own suite.
"""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from typing import Any

import pytest

import uvicorn
from uvicorn.importer import import_from_string

# the uvicorn under test is the installed one, not the sources next to these tests
assert Path(uvicorn.__file__).resolve().parents[1] != Path(__file__).resolve().parents[2], uvicorn.__file__


@pytest.fixture(
    params=[
        pytest.param(
            "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol",
            marks=pytest.mark.skipif(not importlib.util.find_spec("httptools"), reason="httptools not installed."),
            id="httptools",
        ),
        pytest.param("uvicorn.protocols.http.h11_impl:H11Protocol", id="h11"),
        pytest.param("covet_pipe.server.http11:UvicornHTTP", id="covet-pipe"),
    ]
)
def http_protocol_cls(request: pytest.FixtureRequest) -> Any:
    return import_from_string(request.param)


def _give_mock_loop_what_covet_pipe_needs() -> None:
    from tests.protocols import test_http

    loop_cls = test_http.MockLoop
    if getattr(loop_cls, "_covet_pipe", False):
        return
    run_later = loop_cls.run_later
    create_task = loop_cls.create_task

    def time(self: Any) -> float:
        return float(getattr(self, "_now", 0.0))

    def call_at(self: Any, when: float, callback: Any, *args: Any, context: Any = None) -> Any:
        return self.call_later(when - self.time(), callback, *args)

    def advance(self: Any, with_delay: float) -> None:
        # run_later(d) fires what is due d seconds after the start: the clock is there now
        self._now = max(self.time(), with_delay)
        run_later(self, with_delay)

    def call_soon(self: Any, callback: Any, *args: Any, context: Any = None) -> Any:
        return asyncio.get_running_loop().call_soon(callback, *args)

    def create_future(self: Any) -> Any:
        return asyncio.get_running_loop().create_future()

    def create_task_in(self: Any, coroutine: Any, *, context: Any = None, **_: Any) -> Any:
        return create_task(self, coroutine)

    init = loop_cls.__init__

    def registered(self: Any) -> None:
        init(self)
        _loops.append(self)

    loop_cls.__init__ = registered
    loop_cls.time = time
    loop_cls.call_at = call_at
    loop_cls.run_later = advance
    loop_cls.call_soon = call_soon
    loop_cls.create_future = create_future
    loop_cls.create_task = create_task_in
    test_http.MockTask.cancel = lambda self, *a: None
    loop_cls._covet_pipe = True


_loops: list[Any] = []


@pytest.fixture(autouse=True)
def _mock_loop_for_covet_pipe(request: pytest.FixtureRequest) -> Any:
    _give_mock_loop_what_covet_pipe_needs()
    _loops.clear()
    yield
    if "covet-pipe" in request.node.name:
        # a request task a failed covet-pipe case never ran: closed here, not left to warn in another test
        for loop in _loops:
            for coroutine in loop._tasks:
                coroutine.close()
    _loops.clear()
