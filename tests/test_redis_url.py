"""covet_pipe.redis_url: URLs, password sources and a client that reaches a real redis-server."""

from __future__ import annotations

import asyncio

import pytest

from covet_pipe.redis_url import connect, describe, password_from
from tests._redis import RealRedis, real_redis  # noqa: F401  (fixture)


def test_a_url_that_is_not_redis_is_refused_with_examples() -> None:
    with pytest.raises(ValueError, match=r"myplugin: expected a Redis URL such as redis://"):
        connect("http://127.0.0.1:6379", who="myplugin")


def test_describe_hides_the_password() -> None:
    assert describe("redis://user:s3cret@127.0.0.1:6379/0") == "redis://user:***@127.0.0.1:6379/0"
    assert describe("redis://:s3cret@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert describe("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_password_sources(tmp_path, monkeypatch) -> None:
    f = tmp_path / "pw"
    f.write_text("hunter2\nignored\n")
    assert password_from(password_file=str(f)) == "hunter2"
    with pytest.raises(ValueError, match="cannot read the password file"):
        password_from(password_file=str(tmp_path / "missing"), who="RedisStorage")
    monkeypatch.setenv("COVET_TEST_PW", "pw2")
    assert password_from(password_env="COVET_TEST_PW") == "pw2"
    with pytest.raises(ValueError, match="COVET_TEST_UNSET holding the Redis password is not set"):
        password_from(password_env="COVET_TEST_UNSET")
    with pytest.raises(ValueError, match="not both"):
        password_from(password_file=str(f), password_env="COVET_TEST_PW")


def test_connect_reaches_a_password_protected_server(tmp_path) -> None:
    server = RealRedis("--requirepass", "hunter2")
    try:
        pw = tmp_path / "pw"
        pw.write_text("hunter2\n")

        async def main() -> None:
            client = connect(server.url, password_file=str(pw))
            try:
                assert await client.ping() is True
                await client.set("k", b"\x00\xff")
                assert await client.get("k") == b"\x00\xff"
            finally:
                await client.aclose()

        asyncio.run(main())
    finally:
        server.stop()
