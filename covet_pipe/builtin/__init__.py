"""covet-pipe's built-in plugins, ``covet_pipe.builtin``.

The middleware (``GZip`` among them: a body transform), auth and storage plugins use only
covet-pipe's public API, as a third-party plugin would. The protocol plugins are covet-pipe's
listener's own: ``RespProtocol`` and ``ProxyProtocol`` are defined in :mod:`covet_pipe.server.resp`
and :mod:`covet_pipe.server.proxy`, and their modules here are the names to register them by.
"""

from covet_pipe.builtin.auth_guard import AuthGuard
from covet_pipe.builtin.cors import CORS, CORSMiddleware
from covet_pipe.builtin.gzip import GZip
from covet_pipe.builtin.jwt_auth import JWTAuth
from covet_pipe.builtin.jwt_handler import JWTHandler
from covet_pipe.builtin.memory_storage import MemoryStorage, StorageFullError
from covet_pipe.builtin.prometheus import PrometheusMetrics, PrometheusMetricsPlugin
from covet_pipe.builtin.proxy_protocol import ProxyProtocol
from covet_pipe.builtin.rate_limit import RateLimit, RedisRateLimit
from covet_pipe.builtin.redis_storage import RedisStorage, StorageError, StorageUnavailableError
from covet_pipe.builtin.request_id import RequestId
from covet_pipe.builtin.resp import RespProtocol

__all__ = [
    "AuthGuard",
    "CORS",
    "CORSMiddleware",
    "GZip",
    "JWTAuth",
    "JWTHandler",
    "MemoryStorage",
    "PrometheusMetrics",
    "PrometheusMetricsPlugin",
    "ProxyProtocol",
    "RateLimit",
    "RedisRateLimit",
    "RedisStorage",
    "RequestId",
    "RespProtocol",
    "StorageError",
    "StorageFullError",
    "StorageUnavailableError",
]
