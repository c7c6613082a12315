"""Server commands: TIME, and INFO with the sections clients read (server, clients, memory, cluster, keyspace).

INFO reports ``redis_version:7.0.0``, the redis release whose replies these commands match, so
clients that pick features by version pick the ones served; ``covet_pipe_version`` says what runs.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from typing import Any

from covet_pipe.server.resp.codec import encode_array, encode_bulk

__all__ = ["SERVER_COMMANDS", "REDIS_VERSION"]

#: the redis release the served commands' replies match
REDIS_VERSION = "7.0.0"
_STARTED = time.time()
_SECTIONS = ("server", "clients", "memory", "cluster", "keyspace")


async def cmd_time(conn: Any, args: list[bytes]) -> bytes:
    now = time.time_ns() // 1000
    return encode_array([encode_bulk(b"%d" % (now // 1_000_000)), encode_bulk(b"%d" % (now % 1_000_000))])


async def _section(conn: Any, name: str) -> list[str]:
    if name == "server":
        from covet_pipe import __version__
        port = (getattr(conn.info, "server", None) or ("", 0))[1]
        return ["# Server", f"redis_version:{REDIS_VERSION}", f"covet_pipe_version:{__version__}",
                "redis_mode:standalone", f"os:{sys.platform}", f"arch_bits:{64 if sys.maxsize > 2**32 else 32}",
                f"process_id:{os.getpid()}", f"tcp_port:{port}",
                f"uptime_in_seconds:{int(time.time() - _STARTED)}"]
    if name == "clients":
        connections = getattr(conn.server, "connections", ())
        return ["# Clients", f"connected_clients:{len(connections)}"]
    if name == "memory":
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
        return ["# Memory", f"used_memory:{rss}", f"used_memory_rss:{rss}", "maxmemory:0"]
    if name == "cluster":
        return ["# Cluster", "cluster_enabled:0"]
    keys, expires = await conn.storage().key_count()
    return ["# Keyspace"] + ([f"db0:keys={keys},expires={expires},avg_ttl=0"] if keys else [])


async def cmd_info(conn: Any, args: list[bytes]) -> bytes:
    asked = [a.decode("latin-1").lower() for a in args[1:]] or ["default"]
    names = [s for s in _SECTIONS if s in asked or {"default", "all", "everything"} & set(asked)]
    parts = [("\r\n".join(await _section(conn, s)) + "\r\n") for s in names]
    text = "\r\n".join(parts).encode()
    if conn.proto == 3:
        return b"=%d\r\ntxt:%s\r\n" % (len(text) + 4, text)
    return encode_bulk(text)


#: (name, arity, handler, key position, every word after the name a key)
SERVER_COMMANDS: list[tuple[str, int, Any, int, bool]] = [
    ("time", 1, cmd_time, 0, False),
    ("info", -1, cmd_info, 0, False),
]
