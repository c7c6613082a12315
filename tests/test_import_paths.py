"""Import paths users have: the built-ins' modules and the uvicorn class name the objects that
now live in the protocol packages, and the server side stands without the built-ins."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import covet_pipe.builtin

SERVER = Path(covet_pipe.__file__).parent / "server"

#: every module covet_pipe.builtin has had, with the names each exports
BUILTIN_MODULES = {
    "auth_guard": ["AuthGuard"],
    "cors": ["CORS", "CORSMiddleware"],
    "gzip": ["GZip", "accepts_gzip", "EXCLUDED_CONTENT_TYPES"],
    "jwt_auth": ["JWTAuth"],
    "jwt_handler": ["JWTHandler"],
    "memory_storage": ["MemoryStorage", "StorageFullError"],
    "prometheus": ["PrometheusMetrics", "PrometheusMetricsPlugin"],
    "proxy_protocol": ["ProxyProtocol", "V2_SIGNATURE"],
    "rate_limit": ["RateLimit", "RedisRateLimit"],
    "redis_storage": ["RedisStorage", "StorageError", "StorageUnavailableError"],
    "request_id": ["RequestId"],
    "resp": ["RespProtocol"],
}

#: (old path, new path) of the objects that moved into covet_pipe.server's packages
MOVED = [
    ("covet_pipe.builtin:RespProtocol", "covet_pipe.server.resp.protocol:RespProtocol"),
    ("covet_pipe.builtin.resp:RespProtocol", "covet_pipe.server.resp.protocol:RespProtocol"),
    ("covet_pipe.server.resp:RespProtocol", "covet_pipe.server.resp.protocol:RespProtocol"),
    ("covet_pipe.builtin:ProxyProtocol", "covet_pipe.server.proxy:ProxyProtocol"),
    ("covet_pipe.builtin.proxy_protocol:ProxyProtocol", "covet_pipe.server.proxy:ProxyProtocol"),
    ("covet_pipe.builtin.proxy_protocol:V2_SIGNATURE", "covet_pipe.server.proxy:V2_SIGNATURE"),
    ("covet_pipe.builtin:StorageFullError", "covet_pipe.server.resp.errors:StorageFullError"),
    ("covet_pipe.builtin.memory_storage:StorageFullError", "covet_pipe.server.resp.errors:StorageFullError"),
    ("covet_pipe.builtin:RedisStorage", "covet_pipe.storage.redis_engine:RedisStorage"),
    ("covet_pipe.builtin:StorageUnavailableError", "covet_pipe.storage.errors:StorageUnavailableError"),
    ("covet_pipe.builtin:StorageError", "covet_pipe.storage.errors:StorageError"),
    ("covet_pipe.server.http11:UvicornHTTP", "covet_pipe.server.http11.uvicorn_http:UvicornHTTP"),
    ("covet_pipe.server.http11:HTTP11Protocol", "covet_pipe.server.http11.protocol:HTTP11Protocol"),
    ("covet_pipe.server.http11:settings_for", "covet_pipe.server.http11.protocol:settings_for"),
    # the API contract's module names
    ("covet_pipe.plugins:PluginManager", "covet_pipe.manager:PluginManager"),
    ("covet_pipe.plugins:PluginConfig", "covet_pipe.config:PluginConfig"),
    ("covet_pipe.types:Request", "covet_pipe._core:Request"),
    ("covet_pipe.types:Response", "covet_pipe._core:Response"),
    ("covet_pipe.types:PluginContext", "covet_pipe.context:PluginContext"),
    ("covet_pipe:StreamedResponse", "covet_pipe._core:StreamedResponse"),
]


def _resolve(path: str) -> object:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize(("module", "names"), sorted(BUILTIN_MODULES.items()))
def test_every_builtin_module_imports_and_exports_its_names(module, names):
    mod = importlib.import_module(f"covet_pipe.builtin.{module}")
    for name in names:
        obj = getattr(mod, name)
        if name in covet_pipe.builtin.__all__:        # the package's own name for it: the same object
            assert getattr(covet_pipe.builtin, name) is obj, name


def test_builtin_package_has_no_module_beyond_the_listed_ones():
    # a new built-in module is a new public path: list it above so the paths stay covered
    found = {m.name for m in pkgutil.iter_modules(covet_pipe.builtin.__path__)}
    assert found == set(BUILTIN_MODULES)
    assert set(covet_pipe.builtin.__all__) <= {n for names in BUILTIN_MODULES.values() for n in names}


@pytest.mark.parametrize(("old", "new"), MOVED, ids=[old for old, _ in MOVED])
def test_old_path_is_the_same_object_as_the_new_one(old, new):
    assert _resolve(old) is _resolve(new)


def test_uvicorn_resolves_the_documented_http_class():
    from uvicorn.importer import import_from_string

    from covet_pipe.server.http11.uvicorn_http import UvicornHTTP
    assert import_from_string("covet_pipe.server.http11:UvicornHTTP") is UvicornHTTP


def test_compiled_http11_extension_is_named_after_its_package():
    from covet_pipe.server.http11 import _http11
    assert _http11.__name__ == "covet_pipe.server.http11._http11"
    assert Path(_http11.__file__).parent == SERVER / "http11"


def _imported_modules(path: Path) -> set[str]:
    if path.suffix == ".py":
        names = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        return names
    # .pyx / .pxi: Cython, which ast cannot read; its import lines are Python's
    return set(re.findall(r"^\s*(?:from|c?import)\s+([\w.]+)", path.read_text(), flags=re.M))


def test_nothing_under_server_imports_the_builtins():
    sources = [p for p in SERVER.rglob("*") if p.suffix in (".py", ".pyx", ".pxi")]
    assert len(sources) > 15
    offenders = {str(p.relative_to(SERVER)): sorted(n for n in _imported_modules(p)
                                                     if n == "covet_pipe.builtin"
                                                     or n.startswith("covet_pipe.builtin."))
                 for p in sources}
    assert {p: n for p, n in offenders.items() if n} == {}
