"""Hook timing: avg_hook_us counts every hook, sync or async, request or response side."""

from __future__ import annotations

import asyncio
import time

import pytest

from covet_pipe import MiddlewarePlugin, PluginManager, wrap
from tests._helpers import asgi_call, echo_app

#: one request in this many is timed (the core's SAMPLE_MASK + 1): this many in a row time one
SAMPLE_EVERY = 64
#: what the slow hooks wait, in seconds
WAIT = 0.005


class AsyncRequestWaits(MiddlewarePlugin):
    name = "slow"
    version = "1.0.0"

    async def process_request(self, request, ctx):
        await asyncio.sleep(WAIT)                 # a real suspension on the event loop


class AsyncResponseWaits(MiddlewarePlugin):
    name = "slow"
    version = "1.0.0"

    async def process_response(self, response, ctx):
        await asyncio.sleep(WAIT)


class SyncRequestWaits(MiddlewarePlugin):
    name = "slow"
    version = "1.0.0"

    def process_request(self, request, ctx):
        time.sleep(WAIT)


class SyncResponseWaits(MiddlewarePlugin):
    name = "slow"
    version = "1.0.0"

    def process_response(self, response, ctx):
        time.sleep(WAIT)


class Quick(MiddlewarePlugin):
    """Does nothing in both hooks: its figure stays far below the slow one's."""

    name = "quick"
    version = "1.0.0"

    async def process_request(self, request, ctx):
        return None

    def process_response(self, response, ctx):
        return None


@pytest.mark.parametrize("slow_plugin", [AsyncRequestWaits, AsyncResponseWaits, SyncRequestWaits,
                                         SyncResponseWaits])
async def test_avg_hook_us_counts_the_time_of_every_kind_of_hook(slow_plugin):
    manager = PluginManager()
    manager.register(slow_plugin())
    manager.register(Quick())
    app = wrap(echo_app, manager)
    for _ in range(SAMPLE_EVERY):
        assert (await asgi_call(app, "/")).status == 200
    stats = {p["name"]: p["stats"] for p in manager.list_plugins()}
    slow, quick = stats["slow"]["avg_hook_us"], stats["quick"]["avg_hook_us"]
    assert slow is not None and slow >= WAIT * 1e6 * 0.9, stats
    assert quick is not None and quick < slow, stats
