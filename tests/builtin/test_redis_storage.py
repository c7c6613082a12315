"""RedisStorage beyond the shared contract (tests/builtin/test_storage_contract.py), against real
redis-servers on free 127.0.0.1 ports: Redis going away and coming back, a Redis that stops answering,
passwords from a file or the environment, unix sockets, the pool's bound, the key prefix, and errors
that name the engine and the URL, never the password."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis.asyncio as redis_asyncio

from covet_pipe import PluginManager
from covet_pipe.builtin import RedisStorage, StorageError, StorageFullError, StorageUnavailableError
from tests._redis import RealRedis, free_port, need_redis, real_redis, wait_port  # noqa: F401  (fixture)

PASSWORD = "pw-Zq81-secret"


async def started(url: str, **options) -> RedisStorage:   # type: ignore[no-untyped-def]
    store = RedisStorage(url, **options)
    await store.start()
    return store


async def test_a_stopped_redis_fails_every_call_clearly_and_the_engine_recovers_when_it_is_back(real_redis):
    store = await started(real_redis.url, timeout=2.0)
    try:
        await store.set("k", b"v")
        assert store.metadata()["connected"] is True and store.metadata()["last_error"] is None
        real_redis.stop()
        calls = [store.get("k"), store.set("k", b"w"), store.delete("k"), store.exists("k"),
                 store.expire("k", 10), store.expire("k", None), store.ttl("k")]
        for call in calls:
            t0 = time.monotonic()
            with pytest.raises(StorageUnavailableError) as info:
                await call
            assert time.monotonic() - t0 < 2.0          # refused at once: no backoff, no waiting out the timeout
            err = info.value
            assert err.http_status == 503 and err.plugin_name == "redis"
            text = str(err)
            assert text.startswith(f"RedisStorage ({real_redis.url}): ")
            assert "cannot reach Redis" in text and "start redis-server or fix the URL" in text
            assert "reconnect by themselves" in text
        meta = store.metadata()
        assert meta["connected"] is False and "cannot reach Redis" in meta["last_error"]
        real_redis.start()                              # the same port, an empty Redis
        assert await store.get("k") is None             # the very first call after it is back goes through
        await store.set("k", b"again")
        assert await store.get("k") == b"again"
        assert store.metadata()["connected"] is True
    finally:
        await store.shutdown()


async def test_going_down_and_coming_back_are_logged_once_each(real_redis, caplog):
    store = await started(real_redis.url)
    try:
        await store.set("k", b"v")
        real_redis.stop()
        with caplog.at_level(logging.WARNING, logger="covet_pipe.storage.redis"):
            for _ in range(5):
                with pytest.raises(StorageUnavailableError):
                    await store.get("k")
            real_redis.start()
            for _ in range(3):
                await store.get("k")
        lines = [r.getMessage() for r in caplog.records if r.name == "covet_pipe.storage.redis"]
        assert len(lines) == 2, lines
        assert "cannot reach Redis" in lines[0] and "answers again" in lines[1]
    finally:
        await store.shutdown()


async def test_a_redis_that_stops_answering_times_out_per_call_and_no_stale_reply_follows(real_redis):
    store = await started(real_redis.url, timeout=0.5)
    try:
        await store.set("a", b"value-a")
        await store.set("b", b"value-b")
        os.kill(real_redis.proc.pid, signal.SIGSTOP)    # accepts nothing, answers nothing
        try:
            t0 = time.monotonic()
            with pytest.raises(StorageUnavailableError, match=r"get: no answer within timeout=0.5 s"):
                await store.get("a")
            assert time.monotonic() - t0 < 0.5 + 2.0    # the timeout, with a generous margin
        finally:
            os.kill(real_redis.proc.pid, signal.SIGCONT)
        # the reply to the timed-out GET a must not be taken for the answer to GET b
        assert await store.get("b") == b"value-b"
        assert await store.get("a") == b"value-a"
    finally:
        await store.shutdown()


async def test_redis_down_at_startup_is_logged_and_calls_work_once_it_is_up(caplog):
    need_redis()
    server = RealRedis()
    server.stop()
    manager = PluginManager()
    manager.register(RedisStorage(server.url))
    try:
        with caplog.at_level(logging.WARNING, logger="covet_pipe.storage.redis"):
            await manager.initialize_all()              # not fatal: the plugin starts
        assert any("ping: cannot reach Redis" in r.getMessage() and "starts anyway" in r.getMessage()
                   for r in caplog.records)
        store = manager.get_storage_engine("redis")
        assert [p["state"] for p in manager.list_plugins() if p["name"] == "redis"] == ["active"]
        with pytest.raises(StorageUnavailableError):
            await store.get("k")
        server.start()
        await store.set("k", b"v")
        assert await store.get("k") == b"v"
        assert manager.storage_counts()["redis"]["get"] == (2, 1)
    finally:
        await manager.shutdown_all()
        server.stop()


async def test_password_from_a_file_or_the_environment_and_a_wrong_one_is_named_without_it(tmp_path, monkeypatch):
    need_redis()
    server = RealRedis("--requirepass", PASSWORD)
    try:
        secret = tmp_path / "redis-password"
        secret.write_text(PASSWORD + "\n")
        store = await started(server.url, password_file=str(secret))
        await store.set("k", b"v")
        assert await store.get("k") == b"v"
        await store.shutdown()

        monkeypatch.setenv("COVET_TEST_REDIS_PW", PASSWORD)
        store = await started(server.url, password_env="COVET_TEST_REDIS_PW")
        assert await store.get("k") == b"v"
        await store.shutdown()

        wrong = "wrong-" + PASSWORD
        url = f"redis://:{wrong}@127.0.0.1:{server.port}/0"
        store = await started(url)
        try:
            with pytest.raises(StorageUnavailableError) as info:
                await store.get("k")
            text = str(info.value)
            assert "refused the password" in text and "check password_file, password_env" in text
            assert wrong not in text and PASSWORD not in text
            assert f"redis://:***@127.0.0.1:{server.port}/0" in text
            meta = store.metadata()
            assert meta["url"] == f"redis://:***@127.0.0.1:{server.port}/0" and wrong not in repr(meta)
            assert wrong not in repr(store)
        finally:
            await store.shutdown()

        store = await started(server.url)                 # no password at all
        try:
            with pytest.raises(StorageUnavailableError, match="Redis asks for a password .*password_file or password_env"):
                await store.get("k")
        finally:
            await store.shutdown()
    finally:
        server.stop()


async def test_a_missing_password_file_fails_the_start_naming_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"RedisStorage: cannot read the password file .*nope.*create it"):
        await RedisStorage("redis://127.0.0.1:1/0", password_file=str(tmp_path / "nope")).start()


async def test_a_unix_socket_url(tmp_path):
    need_redis()
    sock = tmp_path / "redis.sock"
    server = RealRedis("--unixsocket", str(sock), "--unixsocketperm", "700")
    try:
        async with RedisStorage(f"unix://{sock}?db=0") as store:
            await store.set("k", b"\x00v")
            assert await store.get("k") == b"\x00v"
            assert store.metadata()["url"] == f"unix://{sock}?db=0"
    finally:
        server.stop()


def _tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for 127.0.0.1 signed by it (openssl, as an operator makes them)."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed (Debian's openssl package): it makes the TLS test's certificates")
    ca_key, ca, key, csr, cert, ext = (folder / n for n in ("ca.key", "ca.crt", "server.key", "server.csr",
                                                              "server.crt", "ext.cnf"))
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    for cmd in (["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
                 "-subj", "/CN=covet-pipe test CA"],
                ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
                ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
                 "-days", "2", "-extfile", ext]):
        subprocess.run(["openssl", *map(str, cmd)], check=True, capture_output=True, timeout=60)
    return ca, cert, key


async def test_a_rediss_url_speaks_tls_verified_against_the_ca_in_the_query(tmp_path):
    need_redis()
    ca, cert, key = _tls_files(tmp_path)
    tls_port = free_port()
    server = RealRedis("--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                       "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no")
    try:
        wait_port(tls_port, server.proc)
        async with RedisStorage(f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={ca}") as store:
            await store.set("k", b"over tls")
            assert await store.get("k") == b"over tls"
            assert store.metadata()["connected"] is True
        # without the CA, the server's certificate is not trusted: a clear unavailable error, not a hang
        async with RedisStorage(f"rediss://127.0.0.1:{tls_port}/0", timeout=5.0) as store:
            with pytest.raises(StorageUnavailableError, match=r"cannot reach Redis over TLS .*CERTIFICATE_VERIFY_FAILED.*check the URL's TLS options"):
                await store.get("k")
    finally:
        server.stop()


async def test_calls_beyond_max_connections_wait_for_a_connection_and_all_succeed(real_redis):
    async with RedisStorage(real_redis.url, max_connections=2, key_prefix="pool:") as store:
        await asyncio.gather(*(store.set(f"k{i}", b"%d" % i) for i in range(50)))
        got = await asyncio.gather(*(store.get(f"k{i}") for i in range(50)))
        assert got == [b"%d" % i for i in range(50)]
        raw = redis_asyncio.Redis.from_url(real_redis.url)
        try:
            clients = await raw.client_list()
        finally:
            await raw.aclose()
        assert len(clients) <= 2 + 1                    # the pool's two, and the one asking


async def test_a_max_connections_in_the_url_bounds_the_calls_in_flight_too(real_redis):
    # redis-py lets the URL's query win over keyword arguments; the engine follows the pool it got
    async with RedisStorage(real_redis.url + "?max_connections=3", max_connections=50) as store:
        got = await asyncio.gather(*(store.exists(f"k{i}") for i in range(40)))
        assert got == [False] * 40


async def test_key_prefix_is_put_before_every_key_in_redis(real_redis):
    raw = redis_asyncio.Redis.from_url(real_redis.url)
    try:
        async with RedisStorage(real_redis.url, key_prefix="app1:") as a, \
                RedisStorage(real_redis.url, key_prefix="app2:") as b:
            await a.set("user", b"alice")
            await b.set("user", b"bob", ttl=60)
            assert await a.get("user") == b"alice" and await b.get("user") == b"bob"
            assert sorted(await raw.keys("*")) == [b"app1:user", b"app2:user"]
            assert await raw.get("app1:user") == b"alice"
            assert 0 < await raw.pttl("app2:user") <= 60000
            assert await a.ttl("user") == math.inf
    finally:
        await raw.aclose()


async def test_a_key_of_another_type_is_a_storage_error_not_an_outage(real_redis):
    raw = redis_asyncio.Redis.from_url(real_redis.url)
    try:
        await raw.rpush("listkey", "x")
        async with RedisStorage(real_redis.url) as store:
            with pytest.raises(StorageError) as info:
                await store.get("listkey")
            assert not isinstance(info.value, StorageUnavailableError) and info.value.http_status == 500
            assert "WRONGTYPE" in str(info.value) and "key_prefix" in str(info.value)
            assert store.metadata()["connected"] is True
    finally:
        await raw.aclose()


async def test_a_full_redis_is_storage_full_as_a_full_memory_storage_is():
    need_redis()
    server = RealRedis("--maxmemory", "2mb", "--maxmemory-policy", "noeviction")
    try:
        async with RedisStorage(server.url) as store:
            with pytest.raises(StorageFullError, match=r"RedisStorage .* is full: set refused .*maxmemory"):
                for i in range(200):
                    await store.set(f"big{i}", b"x" * 100_000)
            assert await store.get("big0") is not None      # reads still work
    finally:
        server.stop()


async def test_calls_before_start_and_after_shutdown_say_what_to_do(real_redis):
    store = RedisStorage(real_redis.url)
    with pytest.raises(StorageUnavailableError, match=r"is not started: register it with a PluginManager"):
        await store.get("k")
    await store.start()
    await store.set("k", b"v")
    await store.shutdown()
    with pytest.raises(StorageUnavailableError, match=r"was shut down"):
        await store.get("k")


@pytest.mark.parametrize("kwargs, message", [
    ({"url": "http://127.0.0.1:6379"}, r"RedisStorage\(url=...\): expected a Redis URL such as redis://"),
    ({"url": "redis://:hunter2@host:1/0?x"}, None),          # a valid URL: accepted
    ({"url": 6379}, r"RedisStorage\(url=...\): expected a Redis URL .* got int"),
    ({"timeout": 0}, r"RedisStorage\(timeout=...\): expected seconds > 0"),
    ({"timeout": math.inf}, r"RedisStorage\(timeout=...\): expected seconds > 0"),
    ({"max_connections": 0}, r"RedisStorage\(max_connections=...\): expected an integer >= 1"),
    ({"max_connections": True}, r"RedisStorage\(max_connections=...\): expected an integer >= 1"),
    ({"password_env": ""}, r"RedisStorage\(password_env=...\): expected a non-empty str"),
])
def test_bad_settings_are_refused_at_construction(kwargs, message):
    if message is None:
        RedisStorage(**kwargs)
        return
    with pytest.raises(ValueError, match=message):
        RedisStorage(**kwargs)


def test_a_bad_url_with_a_password_is_refused_without_showing_it():
    with pytest.raises(ValueError) as info:
        RedisStorage("http://user:hunter2@host/")
    assert "hunter2" not in str(info.value) and "***" in str(info.value)


async def test_decode_responses_in_the_url_is_refused(real_redis):
    with pytest.raises(ValueError, match="decode_responses=true in the URL would turn stored bytes into str"):
        await RedisStorage(real_redis.url + "?decode_responses=true").start()


def test_a_bad_key_prefix_is_a_type_error():
    with pytest.raises(TypeError, match=r"key_prefix=...\): expected a str"):
        RedisStorage(key_prefix=b"app:")  # type: ignore[arg-type]


def test_registered_under_redis_and_it_suspends():
    store = RedisStorage()
    assert store.name == "redis" and store.suspends is True
    assert RedisStorage.__module__ == "covet_pipe.storage.redis_engine"
    assert "redis://127.0.0.1:6379/0" == store.metadata()["url"] and store.metadata()["connected"] is False


