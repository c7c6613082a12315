"""The fleet: two managers, each with its own plugin folder (two "hosts"), sharing one real redis-server.

A reload on one reaches the other through Redis pub/sub; the generation is stored in Redis and a worker
that missed changes converges to it; a host whose file differs reports it instead of loading it; Redis
stopped and started again: local reloads go on, and the fleet converges when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis_asyncio

from covet_pipe import PluginConfig, PluginManager, wrap
from covet_pipe.fleet.store import keys_for
from covet_pipe.reload import content_hash
from covet_pipe.testing import call
from tests._redis import RealRedis, need_redis
from tests.conftest import text_app

#: generous: a change is expected within a few tens of milliseconds; the tests fail only past this
BOUND = 10.0

TEMPLATE = '''
from covet_pipe import MiddlewarePlugin


class Stamp(MiddlewarePlugin):
    name = "stamp"
    version = "{version}"

    def process_response(self, response, ctx):
        response.headers.add("x-stamp", "{tag}")


plugin = Stamp()
'''


def deploy(folder: Path, tag: str) -> str:
    """Write version *tag* of the plugin into *folder* (as a deploy would); its content hash."""
    path = folder / "stamp.py"
    tmp = folder / ".stamp.tmp"
    tmp.write_text(TEMPLATE.format(version=f"1.0.{tag.lstrip('v')}", tag=tag))
    os.replace(tmp, path)
    digest = content_hash(path)
    assert digest is not None
    return digest


class Host:
    """One "host": its plugin folder and a manager serving a pipeline, in the fleet."""

    def __init__(self, folder: Path, url: str, fleet_name: str, watch: bool = False) -> None:
        self.folder = folder
        folder.mkdir()
        deploy(folder, "v1")
        self.manager = PluginManager(PluginConfig(plugin_paths=[str(folder)], hot_reload=True, fleet=url,
                                                  fleet_name=fleet_name, reload_on_change=watch))
        self.pipeline = wrap(text_app, self.manager)

    async def stamp(self) -> str | None:
        result = await call(self.pipeline, "GET", "/")
        assert result.status == 200
        values = result.headers.getall("x-stamp")
        return values[0] if values else None

    def fleet(self) -> dict[str, Any]:
        readings = self.manager.fleet_health()
        assert readings is not None
        return readings


async def until(check: Callable[[], Awaitable[bool] | bool], what: str, timeout: float = BOUND) -> float:
    """Wait until *check* holds; the seconds it took. Fails naming *what* past *timeout*."""
    started = time.monotonic()
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            pytest.fail(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
def redis_server() -> Any:
    need_redis()
    server = RealRedis()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def hosts(tmp_path: Path, redis_server: RealRedis) -> AsyncIterator[tuple[Host, Host]]:
    name = f"test-{uuid.uuid4().hex[:8]}"
    a, b = Host(tmp_path / "a", redis_server.url, name), Host(tmp_path / "b", redis_server.url, name)
    await a.manager.initialize_all()
    await b.manager.initialize_all()
    try:
        await until(lambda: a.fleet()["connected"] and b.fleet()["connected"], "both connected")
        yield a, b
    finally:
        await a.manager.shutdown_all()
        await b.manager.shutdown_all()


@contextlib.asynccontextmanager
async def raw(url: str) -> AsyncIterator[Any]:
    client = redis_asyncio.Redis.from_url(url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_a_reload_on_one_worker_reaches_the_other_and_is_not_sent_back(hosts, redis_server):
    a, b = hosts
    assert await a.stamp() == await b.stamp() == "v1"
    digest = deploy(a.folder, "v2")
    assert deploy(b.folder, "v2") == digest            # the same file on both hosts
    await a.manager.reload_plugin("stamp")
    assert await a.stamp() == "v2"
    await until(lambda: _serves(b, "v2"), "host b serves v2")
    await until(lambda: a.fleet()["generation"] == b.fleet()["generation"] == 1, "both at generation 1")
    fa, fb = a.fleet(), b.fleet()
    assert fa["stored_generation"] == fb["stored_generation"] == 1
    assert fa["counts"]["published"] == 1 and fa["counts"]["applied"] == 0
    assert fb["counts"]["applied"] == 1 and fb["counts"]["published"] == 0
    assert fb["recent"][0]["generation"] == 1 and 0 <= fb["recent"][0]["delay_s"] < BOUND
    await asyncio.sleep(0.3)            # time enough for an echo, were there one
    async with raw(redis_server.url) as client:
        keys = keys_for(a.fleet()["name"])
        assert await client.get(keys.generation) == b"1"      # b did not publish what it applied
        assert digest in (await client.hget(keys.latest, "stamp")).decode()
    assert a.manager.reload_counts() == b.manager.reload_counts() == {"stamp": {"ok": 1, "failed": 0}}
    health = await b.manager.get_health_status()
    assert health["status"] == "ok" and health["fleet"]["generation"] == 1 and health["fleet"]["connected"]
    assert fa["last_error"] is None and fb["last_error"] is None     # no connection was lost on the way


async def test_a_file_change_the_watcher_reloads_is_published_too(tmp_path, redis_server):
    name = f"test-{uuid.uuid4().hex[:8]}"
    a = Host(tmp_path / "a", redis_server.url, name, watch=True)
    b = Host(tmp_path / "b", redis_server.url, name)
    await a.manager.initialize_all()
    await b.manager.initialize_all()
    try:
        await until(lambda: a.fleet()["connected"] and b.fleet()["connected"], "both connected")
        deploy(b.folder, "v2")          # host b has no watcher: it waits for the fleet
        deploy(a.folder, "v2")          # host a's watcher sees it and reloads
        await until(lambda: _serves(a, "v2"), "host a's watcher reloaded v2")
        await until(lambda: _serves(b, "v2"), "host b applied v2 through the fleet")
        assert a.fleet()["counts"]["published"] == 1 and b.fleet()["counts"]["applied"] == 1
    finally:
        await a.manager.shutdown_all()
        await b.manager.shutdown_all()


async def _serves(host: Host, tag: str) -> bool:
    return await host.stamp() == tag


async def test_a_host_whose_file_differs_reports_it_and_loads_the_change_once_deployed(hosts):
    a, b = hosts
    wanted = deploy(a.folder, "v2")                   # only host a has the new file
    await a.manager.reload_plugin("stamp")
    await until(lambda: b.fleet()["generation"] == 1, "host b handled generation 1")
    assert await b.stamp() == "v1"                     # it kept its version: its file is not the one changed
    fb = b.fleet()
    assert fb["mismatches"]["stamp"]["expected"] == wanted
    assert "deploy the same file" in fb["mismatches"]["stamp"]["error"]
    assert fb["last_mismatch"]["generation"] == 1
    health = await b.manager.get_health_status()
    assert health["status"] == "degraded"
    assert b.manager.reload_counts() == {}             # nothing was loaded from the wrong file
    deploy(b.folder, "v2")                             # the deploy lands on host b: it loads the change
    await until(lambda: _serves(b, "v2"), "host b serves v2 once its file matches")
    assert b.fleet()["mismatches"] == {} and (await b.manager.get_health_status())["status"] == "ok"


async def test_a_worker_that_missed_changes_converges_to_the_stored_generation(hosts):
    a, b = hosts
    await b.manager.shutdown_all()                     # b is away: its fleet listener stops
    for tag in ("v2", "v3"):
        deploy(a.folder, tag)
        deploy(b.folder, tag)
        await a.manager.reload_plugin("stamp")
    await until(lambda: a.fleet()["generation"] == 2, "host a at generation 2")
    assert b.fleet()["generation"] == 0 and not b.fleet()["connected"]
    await b.manager.initialize_all()                   # back: it reads the latest changes and applies them
    await until(lambda: b.fleet()["generation"] == 2, "host b converged to generation 2")
    assert await b.stamp() == "v3"
    assert b.fleet()["stored_generation"] == 2
    assert b.manager.reload_counts() == {"stamp": {"ok": 1, "failed": 0}}     # the latest change, once


async def test_redis_down_local_reloads_go_on_and_the_fleet_converges_when_it_returns(hosts, redis_server):
    a, b = hosts
    deploy(a.folder, "v2")
    deploy(b.folder, "v2")
    await a.manager.reload_plugin("stamp")
    await until(lambda: _serves(b, "v2"), "host b serves v2")
    redis_server.stop()
    await until(lambda: not a.fleet()["connected"] and not b.fleet()["connected"], "both see Redis gone")
    deploy(a.folder, "v3")
    deploy(b.folder, "v3")
    started = time.monotonic()
    await a.manager.reload_plugin("stamp")             # works locally, Redis or not
    assert time.monotonic() - started < BOUND
    assert await a.stamp() == "v3" and await b.stamp() == "v2"
    assert a.fleet()["pending"] == ["stamp"]
    redis_server.start()                               # back, without its data (no persistence)
    await until(lambda: _serves(b, "v3"), "host b serves v3 once Redis is back")
    await until(lambda: a.fleet()["pending"] == [] and a.fleet()["generation"] == b.fleet()["generation"]
                == b.fleet()["stored_generation"] >= 1, "both at the stored generation")
    async with raw(redis_server.url) as client:
        stored = int(await client.get(keys_for(a.fleet()["name"]).generation))
    assert a.fleet()["generation"] == stored
    assert a.manager.reload_counts()["stamp"]["ok"] == 2 and b.manager.reload_counts()["stamp"]["ok"] == 2


async def test_bad_messages_on_the_channel_are_refused_and_the_fleet_goes_on(hosts, redis_server, caplog):
    import logging
    caplog.set_level(logging.WARNING, logger="covet_pipe.fleet")
    a, b = hosts
    channel = keys_for(b.fleet()["name"]).channel
    async with raw(redis_server.url) as client:
        await client.publish(channel, b"not json")
        await client.publish(channel, b'{"v": 1, "generation": 99}')
        await client.publish(channel, __import__("pickle").dumps({"plugin": "stamp"}))
    await until(lambda: a.fleet()["counts"]["bad_messages"] == b.fleet()["counts"]["bad_messages"] == 3,
                "three messages refused on each host")
    assert b.fleet()["generation"] == 0 and b.fleet()["connected"]
    refused = [r for r in caplog.records if "was refused" in r.getMessage()]
    assert len(refused) == 2            # one line per host for the three (a flood is not logged line by line)
    deploy(a.folder, "v2")
    deploy(b.folder, "v2")
    await a.manager.reload_plugin("stamp")
    await until(lambda: _serves(b, "v2"), "host b serves v2 after the bad messages")


async def test_the_scrape_shows_the_generations_and_the_connection(hosts):
    from prometheus_client.parser import text_string_to_metric_families

    from covet_pipe.metrics.collector import scrape
    a, b = hosts
    deploy(a.folder, "v2")
    deploy(b.folder, "v2")
    await a.manager.reload_plugin("stamp")
    await until(lambda: b.fleet()["generation"] == 1, "host b at generation 1")
    _, body = scrape(b.manager)
    samples = {(s.name, s.labels.get("fleet")): s.value
               for family in text_string_to_metric_families(body.decode()) for s in family.samples}
    name = b.fleet()["name"]
    assert samples[("covet_pipe_fleet_generation", name)] == 1
    assert samples[("covet_pipe_fleet_stored_generation", name)] == 1
    assert samples[("covet_pipe_fleet_connected", name)] == 1


def test_serve_refuses_a_fleet_url_that_is_not_redis(capsys: pytest.CaptureFixture[str]):
    from covet_pipe.cli import main
    root = Path(__file__).resolve().parents[1]
    code = main(["serve", "tests.conftest:text_app", "--app-dir", str(root), "--fleet",
                 "http://user:s3cret@127.0.0.1:6379"])
    err = capsys.readouterr().err
    assert code == 2 and "--fleet: fleet: expected a Redis URL" in err and "s3cret" not in err


async def test_the_admin_api_reloads_into_the_fleet_and_its_health_shows_the_generations(hosts):
    import json

    from covet_pipe import admin_app
    a, b = hosts
    token = "fleet-test-token-0123456789"
    admin_a, admin_b = admin_app(a.manager, token=token), admin_app(b.manager, token=token)
    auth = {"authorization": f"Bearer {token}"}
    deploy(a.folder, "v2")
    deploy(b.folder, "v2")
    answer = await call(admin_a, "POST", "/_plugins/stamp/reload", headers=auth)
    assert answer.status == 200, answer.body
    await until(lambda: _serves(b, "v2"), "host b serves v2 after the admin call on host a")
    await until(lambda: b.fleet()["generation"] == 1, "host b at generation 1")
    answer = await call(admin_b, "GET", "/_plugins/health", headers=auth)
    fleet = json.loads(answer.body)["fleet"]
    assert answer.status == 200 and fleet["connected"] is True
    assert (fleet["name"], fleet["generation"], fleet["stored_generation"], fleet["last_mismatch"]) == \
        (b.fleet()["name"], 1, 1, None)


def test_serve_refuses_a_fleet_password_file_it_cannot_read(tmp_path, capsys: pytest.CaptureFixture[str]):
    from covet_pipe.cli import main
    root = Path(__file__).resolve().parents[1]
    code = main(["serve", "tests.conftest:text_app", "--app-dir", str(root), "--fleet", "redis://127.0.0.1:1/0",
                 "--fleet-password-file", str(tmp_path / "missing")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot read the password file" in err


async def test_a_password_file_that_cannot_be_read_fails_the_start_naming_it(tmp_path):
    from covet_pipe.errors import ConfigError
    manager = PluginManager(PluginConfig(hot_reload=True, fleet="redis://127.0.0.1:1/0",
                                         fleet_password_file=str(tmp_path / "missing")))
    with pytest.raises(ConfigError, match="fleet 'default': cannot read the password file"):
        await manager.initialize_all()


async def test_a_counter_reset_under_a_live_subscription_is_noticed_and_converged_from(hosts, redis_server):
    a, b = hosts
    for tag in ("v2", "v3"):
        deploy(a.folder, tag)
        deploy(b.folder, tag)
        await a.manager.reload_plugin("stamp")
    await until(lambda: b.fleet()["generation"] == 2, "host b at generation 2")
    async with raw(redis_server.url) as client:
        await client.flushall()             # the counter starts again from 0; the connections stay
    deploy(a.folder, "v4")
    deploy(b.folder, "v4")
    await a.manager.reload_plugin("stamp")  # generation 1 again
    await until(lambda: _serves(b, "v4"), "host b applied the change after the reset")
    await until(lambda: a.fleet()["generation"] == b.fleet()["generation"] == b.fleet()["stored_generation"] == 1,
                "both at the new counter's generation")


GREETER = '''
from covet_pipe import MiddlewarePlugin


class Greeter(MiddlewarePlugin):
    name = "greeter"
    version = "1.0.0"

    def __init__(self, word):
        self.word = word

    def process_response(self, response, ctx):
        response.headers.add("x-word", self.word)


def create_plugin(config):
    return Greeter(config.get("word", "none"))
'''


async def test_a_config_change_in_the_manifest_travels_as_a_reload(tmp_path, redis_server):
    name = f"test-{uuid.uuid4().hex[:8]}"
    folders = [tmp_path / "a", tmp_path / "b"]
    for folder in folders:
        folder.mkdir()
        (folder / "greeter.py").write_text(GREETER)
        (folder / "greeter.covet-plugin.toml").write_text('[config]\nword = "hello"\n')
    a, b = (PluginManager(PluginConfig(plugin_paths=[str(f)], hot_reload=True, fleet=redis_server.url,
                                       fleet_name=name)) for f in folders)
    served_b = wrap(text_app, b)
    await a.initialize_all()
    await b.initialize_all()
    try:
        await until(lambda: a.fleet_health()["connected"] and b.fleet_health()["connected"], "both connected")
        assert (await call(served_b, "GET", "/")).headers.getall("x-word") == ["hello"]
        for folder in folders:      # the deploy: the plugin's settings change, its code does not
            (folder / "greeter.covet-plugin.toml").write_text('[config]\nword = "bonjour"\n')
        await a.reload_plugin("greeter")

        async def b_says_bonjour() -> bool:
            return (await call(served_b, "GET", "/")).headers.getall("x-word") == ["bonjour"]
        await until(b_says_bonjour, "host b runs the new settings")
    finally:
        await a.shutdown_all()
        await b.shutdown_all()
