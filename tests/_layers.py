"""Plugin layers for the response-semantics and transparency suites: no-ops of both styles, chains of them.

A *style* names where the plugin under test (the "actor") sits:

- ``hook``: the actor is a hook-style plugin, alone;
- ``call_next``: the actor is a call_next-style plugin, alone;
- ``hook-in-call_next``: the hook actor between two call_next no-ops (one outside it, one inside);
- ``call_next-in-hook``: the call_next actor between two hook no-ops.

:func:`styles` turns that list into pytest parameters.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import pytest

from covet_pipe import MiddlewarePlugin, PluginManager

__all__ = ["ACTOR_PRIORITY", "NoopAsyncHook", "NoopCallNext", "NoopHook", "STYLES", "StampCallNext", "StampHook",
           "calls_of", "layered", "manager_with", "noop_chain", "NOOP_CHAINS", "styles"]

#: the actor's priority: the no-ops of a mixed chain sit at 10 (outside it) and 900 (inside it)
ACTOR_PRIORITY = 500

STYLES = ("hook", "call_next", "hook-in-call_next", "call_next-in-hook")


class NoopHook(MiddlewarePlugin):
    """Both hooks, changing nothing: the response phase runs, so the app's ``send`` is wrapped."""

    version = "1.0.0"

    def __init__(self, name: str, priority: int, *, protocols: Iterable[str] = ("http",)) -> None:
        self.name = name
        self.priority = priority
        self.protocols = frozenset(protocols)
        self.requests = 0
        self.responses = 0

    def process_request(self, request: Any, ctx: Any) -> None:
        self.requests += 1

    def process_response(self, response: Any, ctx: Any) -> None:
        self.responses += 1


class NoopAsyncHook(NoopHook):
    """NoopHook with ``async def`` hooks that really suspend: the chain leaves the simple path."""

    async def process_request(self, request: Any, ctx: Any) -> None:
        self.requests += 1

    async def process_response(self, response: Any, ctx: Any) -> None:
        self.responses += 1


class NoopCallNext(MiddlewarePlugin):
    """``return await call_next(request)``: the smallest call_next layer."""

    version = "1.0.0"

    def __init__(self, name: str, priority: int) -> None:
        self.name = name
        self.priority = priority
        self.requests = 0
        self.responses = 0

    async def process_request(self, request: Any, call_next: Any) -> Any:
        self.requests += 1
        response = await call_next(request)
        self.responses += 1
        return response


class StampHook(MiddlewarePlugin):
    """An actor: its response hook adds ``x-stamp: <the status it saw>``."""

    name = "stamp"
    version = "1.0.0"
    priority = ACTOR_PRIORITY

    def __init__(self) -> None:
        self.requests = 0
        self.responses = 0

    def process_request(self, request: Any, ctx: Any) -> None:
        self.requests += 1

    def process_response(self, response: Any, ctx: Any) -> None:
        self.responses += 1
        response.headers.add("x-stamp", str(response.status))


class StampCallNext(MiddlewarePlugin):
    """An actor: adds ``x-stamp: <the status call_next returned>``."""

    name = "stamp"
    version = "1.0.0"
    priority = ACTOR_PRIORITY

    def __init__(self) -> None:
        self.requests = 0
        self.responses = 0

    async def process_request(self, request: Any, call_next: Any) -> Any:
        self.requests += 1
        response = await call_next(request)
        self.responses += 1
        response.headers.add("x-stamp", str(response.status))
        return response


def manager_with(*plugins: Any) -> PluginManager:
    manager = PluginManager()
    for plugin in plugins:
        manager.register(plugin)
    return manager


def layered(style: str, hook_actor: Callable[[], Any] | None, call_next_actor: Callable[[], Any] | None) -> list:
    """The plugins of *style* around the actor that style names (see the module's docstring)."""
    if style in ("hook", "hook-in-call_next"):
        assert hook_actor is not None, f"style {style!r} needs a hook-style actor"
        actor = hook_actor()
    else:
        assert call_next_actor is not None, f"style {style!r} needs a call_next-style actor"
        actor = call_next_actor()
    assert actor.priority == ACTOR_PRIORITY, "an actor sits between the no-ops of a mixed chain"
    if style == "hook-in-call_next":
        return [NoopCallNext("outer_call_next", 10), actor, NoopCallNext("inner_call_next", 900)]
    if style == "call_next-in-hook":
        return [NoopHook("outer_hook", 10), actor, NoopHook("inner_hook", 900)]
    return [actor]


def styles(*, only: Iterable[str] = STYLES) -> list:
    """pytest parameters for the styles *only*, each with its name as id."""
    return [pytest.param(s, id=s) for s in only]


def noop_chain(kind: str) -> list:
    """Ten no-op plugins: ``hook10`` (sync hooks), ``call_next10``, or ``mixed5+5`` (interleaved).

    The hook no-ops also see websockets; the call_next ones wrap HTTP only.
    """
    if kind == "hook10":
        return [NoopHook(f"hook{i}", 10 * i, protocols=("http", "websocket")) for i in range(10)]
    if kind == "call_next10":
        return [NoopCallNext(f"call_next{i}", 10 * i) for i in range(10)]
    if kind == "mixed5+5":
        out: list = []
        for i in range(5):
            hook_cls = NoopAsyncHook if i % 2 else NoopHook
            out.append(hook_cls(f"hook{i}", 20 * i, protocols=("http", "websocket")))
            out.append(NoopCallNext(f"call_next{i}", 20 * i + 10))
        return out
    raise ValueError(f"unknown chain {kind!r}")


NOOP_CHAINS = ("hook10", "call_next10", "mixed5+5")


def calls_of(plugins: Iterable[Any]) -> list[tuple[str, int, int]]:
    """``(name, requests, responses)`` of each no-op: proof that the layers ran at all."""
    return [(p.name, p.requests, p.responses) for p in plugins]
