"""Loading native plugins: each bad library is refused with a message naming the file and the fix,
and the pipeline keeps serving; good ones take part in the registry like any plugin."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from covet_pipe import (MiddlewarePlugin, Pipeline, Plugin, PluginConfig, PluginError, PluginLoadError,
                        PluginManager)
from covet_pipe.native import NativePlugin, load_native
from tests._helpers import echo_app, on_server_loop
from tests.native._cplugins import cplugins, cc, probe, stats  # noqa: F401 (the fixture)

#: builds the C test plugins under pytest's temporary folders
pytestmark = pytest.mark.usefixtures("cplugins")


def _text(tmp: Path) -> Path:
    path = tmp / "notes.so"
    path.write_text("these are notes, renamed .so by mistake\n")
    return path


def _truncated(tmp: Path) -> Path:
    good = probe("cut").read_bytes()
    path = tmp / "cut.so"
    path.write_bytes(good[: len(good) // 2])
    return path


def _stub(tmp: Path) -> Path:
    path = tmp / "stub.so"
    path.write_bytes(probe("stub").read_bytes()[:40])
    return path


#: id -> (make the bad file, what the message says after naming the file)
BAD: dict[str, tuple[Callable[[Path], Path], str]] = {
    "abi-major-2": (lambda tmp: probe("abi_two", ABI_VERSION="((2u<<16)|0)"),
                    r" was built for covet ABI 2\.0; this covet-pipe provides ABI 1\.1; rebuild it against "
                    r"native_abi/covet_plugin\.h"),
    "descriptor-too-small": (lambda tmp: probe("small", STRUCT_SIZE=8),
                             r"struct_size = 8 bytes, but an ABI 1\.0 descriptor has 96; fill struct_size "
                             r"with sizeof\(covet_plugin_descriptor\)"),
    "newer-minor-needs-more": (lambda tmp: probe("needy", ABI_VERSION="((1u<<16)|5)", REQUIRES_MINOR=3),
                               r" was built for covet ABI 1\.5 and needs the host functions of ABI 1\.3; "
                               r"this covet-pipe provides ABI 1\.1: upgrade covet-pipe"),
    "requires-above-own-minor": (lambda tmp: probe("overreach", REQUIRES_MINOR=3),
                                 r"needs the host functions of ABI 1\.3; this covet-pipe provides ABI 1\.1"),
    "missing-entry-symbol": (lambda tmp: cc("no_entry.c", "no_entry.so"),
                             r" exports neither covet_plugin_entry_v1 \(a C plugin\) nor PyInit_no_entry"),
    "entry-returns-null": (lambda tmp: probe("absent", ENTRY_NULL=True),
                           r"covet_plugin_entry_v1\(\) returned NULL: the plugin says it cannot run here"),
    "null-name": (lambda tmp: probe("nameless", NULL_NAME=True),
                  r"the descriptor's name is NULL; set it to a string"),
    "bad-version": (lambda tmp: probe("badver", VERSION='"one point oh"'),
                    r"plugin 'badver' has version 'one point oh', which is not a PEP 440 version"),
    "bad-name": (lambda tmp: probe("bad name!"),
                 r"plugin name 'bad name!' is not valid: use letters, digits"),
    "not-elf": (_text, r" cannot be loaded: it is not an ELF file"),
    "truncated-half": (_truncated, r" cannot be loaded: it is truncated \(\d+ bytes, but its headers point "
                                   r"past the end\); rebuild or copy it again"),
    "truncated-header": (_stub, r" cannot be loaded: it is truncated \(40 bytes, less than an ELF header\)"),
    "object-file": (lambda tmp: cc("no_entry.c", "object.so", "-c", shared=False),
                    r" cannot be loaded: it is a relocatable object \(\.o\), not a shared library; "
                    r"build it with -shared -fPIC"),
    "executable": (lambda tmp: cc("no_entry.c", "program.so", "-no-pie", defines={"WITH_MAIN": True},
                                  shared=False),
                   r" cannot be loaded: it is an executable, not a shared library; build it with -shared"),
    "pie-executable": (lambda tmp: cc("no_entry.c", "pie.so", "-pie", defines={"WITH_MAIN": True},
                                      shared=False),
                       r" cannot be loaded: it is an executable \(PIE\), not a shared library; build it "
                       r"with -shared -fPIC"),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_load_native_bad_library_raises_naming_file_and_fix(kind: str, tmp_path: Path) -> None:
    make, says = BAD[kind]
    path = make(tmp_path)
    with pytest.raises(PluginLoadError, match=says) as info:
        load_native(path)
    assert str(info.value).startswith(str(path)), "the message starts with the file's path"
    assert info.value.path == str(path)
    assert "Traceback" not in str(info.value)


def test_load_native_older_and_newer_minor_needing_nothing_loads() -> None:
    plugin = load_native(probe("minor_ok", ABI_VERSION="((1u<<16)|5)", REQUIRES_MINOR=0))
    assert isinstance(plugin, NativePlugin)
    assert (plugin.name, plugin.abi, plugin.metadata()["host_abi"]) == ("minor_ok", (1, 5), "1.1")


def test_load_native_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(PluginLoadError, match=r"gone\.so does not exist"):
        load_native(tmp_path / "gone.so")


class Marker(MiddlewarePlugin):
    """A Python plugin that marks responses, to show it still runs beside native ones."""

    name = "py_marker"
    version = "1.0.0"
    priority = 50

    def process_response(self, response: Any, ctx: Any) -> None:
        response.headers.set("x-py-marker", "yes")


def test_bad_libraries_refused_while_serving_keep_the_server_answering_200(
        serve: Any, tmp_path: Path) -> None:
    manager = PluginManager()
    manager.register(load_native(probe("steady", priority=10)))
    manager.register(Marker())
    with serve(Pipeline(echo_app, manager)) as s, httpx.Client(base_url=s.url, timeout=10) as client:
        for kind, (make, says) in BAD.items():
            path = make(tmp_path)
            with pytest.raises(PluginLoadError, match=says):
                on_server_loop(s, manager.load_plugin_from_path(str(path)))
            r = client.get("/after-" + kind)
            assert r.status_code == 200, kind
            assert r.headers["x-steady-data"].startswith("steady#"), kind
            assert r.headers["x-py-marker"] == "yes", kind
        assert [e.name for e in manager.get_middleware_chain()] == ["steady", "py_marker"]


class PyDep(Plugin):
    """The Python plugin a native plugin depends on; notes whether the native one started first."""

    name = "py_dep"

    def __init__(self, version: str, native: list[NativePlugin]) -> None:
        self.version = version
        self.native = native
        self.native_inits_seen: int | None = None

    async def initialize(self, ctx: Any) -> None:
        self.native_inits_seen = stats(self.native[0])["init"]


def _dependent() -> Path:
    return probe("needs_dep", DEP='"py_dep>=1,<2"')


async def test_native_dependency_on_python_plugin_starts_after_it() -> None:
    native = load_native(_dependent())
    before = stats(native)["init"]
    dep = PyDep("1.4.0", [native])
    manager = PluginManager()
    manager.register(native)
    manager.register(dep)
    await manager.initialize_all()
    health = await manager.get_health_status()
    assert health["plugins"]["needs_dep"]["state"] == "active"
    assert dep.native_inits_seen == before, "py_dep initialised before the native plugin's init()"
    assert stats(native)["init"] == before + 1
    await manager.shutdown_all()
    assert stats(native)["shutdown"] >= 1
    assert health["plugins"]["needs_dep"]["error"] is None


@pytest.mark.parametrize("have,overall", [(None, "failed"), ("2.0.0", "degraded")], ids=["missing", "too-new"])
async def test_native_dependency_unmet_marks_it_failed_naming_the_constraint(have: str | None,
                                                                             overall: str) -> None:
    native = load_native(_dependent())
    manager = PluginManager()
    manager.register(native)
    if have is not None:
        manager.register(PyDep(have, [native]))
    await manager.initialize_all()
    health = await manager.get_health_status()
    assert health["plugins"]["needs_dep"]["state"] == "failed"
    assert "py_dep>=1,<2" in health["plugins"]["needs_dep"]["error"]
    assert health["status"] == overall


async def test_native_init_error_marks_it_failed_with_its_message(tmp_path: Path) -> None:
    path = probe("refuser", priority=5)
    manager = PluginManager(PluginConfig(plugin_settings={"refuser": {"fail_init": "1"}}))
    manager.register(load_native(probe("steady", priority=10)))
    await manager.load_plugin_from_path(str(path))
    await manager.initialize_all()
    health = await manager.get_health_status()
    error = health["plugins"]["refuser"]["error"]
    assert health["plugins"]["refuser"]["state"] == "failed"
    assert "init() returned -1: init refused: the setting fail_init is set" in error
    assert str(path) in error
    assert health["plugins"]["steady"]["state"] == "active"


@pytest.mark.parametrize("flags,status", [("COVET_FLAG_NONE", 503), ("COVET_FLAG_FAIL_OPEN", 200)],
                         ids=["fail-closed", "fail-open"])
def test_native_init_error_while_serving_answers_by_failure_policy(
        serve: Any, flags: str, status: int) -> None:
    manager = PluginManager(PluginConfig(plugin_settings={"refuser": {"fail_init": "1"}}))
    manager.register(load_native(probe("steady", priority=10)))
    manager.register(Marker())
    with serve(Pipeline(echo_app, manager)) as s:
        on_server_loop(s, manager.load_plugin_from_path(str(probe("refuser", priority=5, FLAGS=flags))))
        r = httpx.get(s.url + "/", timeout=10)
        assert r.status_code == status
        assert "init refused" not in r.text and "Traceback" not in r.text
        if status == 200:
            assert r.headers["x-py-marker"] == "yes"


def _folder(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "good.so").write_bytes(probe("good_native", priority=30).read_bytes())
    broken = folder / "broken.so"
    broken.write_bytes(probe("broken", ABI_VERSION="((2u<<16)|1)").read_bytes())
    (folder / "pyside.py").write_text(
        "from covet_pipe import MiddlewarePlugin\n"
        "class PySide(MiddlewarePlugin):\n"
        "    name = 'pyside'\n"
        "    version = '1.0.0'\n"
        "    priority = 20\n"
        "    def process_response(self, response, ctx):\n"
        "        response.headers.set('x-pyside', 'yes')\n"
        "plugin = PySide()\n")
    return folder, broken


def test_discovery_lists_broken_library_by_path_and_holds_its_place_closed(serve: Any, tmp_path: Path) -> None:
    folder, broken = _folder(tmp_path)
    manager = PluginManager(PluginConfig(plugin_paths=[str(folder)], entry_points=False))
    with serve(Pipeline(echo_app, manager)) as s:
        report = on_server_loop(s, manager.load_plugins())
        assert sorted(report.loaded) == ["good_native", "pyside"]
        assert list(report.failed) == [str(broken)]
        assert "was built for covet ABI 2.1; this covet-pipe provides ABI 1.1" in report.failed[str(broken)]
        r = httpx.get(s.url + "/", timeout=10)
        health = on_server_loop(s, manager.get_health_status())
    # a library that did not load is fail-closed, like one whose init() failed
    assert r.status_code == 503 and "Traceback" not in r.text
    assert health["plugins"]["broken"]["load_failed"] is True
    assert "was built for covet ABI 2.1" in health["plugins"]["broken"]["error"]


def test_discovery_with_a_broken_library_marked_open_serves_the_others(serve: Any, tmp_path: Path) -> None:
    folder, broken = _folder(tmp_path)
    manager = PluginManager(PluginConfig(plugin_paths=[str(folder)], entry_points=False,
                                         failure_policies={"broken": "open"}))
    with serve(Pipeline(echo_app, manager)) as s:
        report = on_server_loop(s, manager.load_plugins())
        assert list(report.failed) == [str(broken)]
        r = httpx.get(s.url + "/", timeout=10)
        assert r.status_code == 200
        assert r.headers["x-good_native-data"].startswith("good_native#")
        assert r.headers["x-pyside"] == "yes"
    kinds = {p["name"]: p["kinds"] for p in manager.list_plugins()}
    assert "native" in kinds["good_native"] and "native" not in kinds["pyside"]


async def test_manifest_beside_library_sets_priority_and_config(tmp_path: Path) -> None:
    lib = tmp_path / "early.so"
    lib.write_bytes(probe("early", priority=500).read_bytes())
    (tmp_path / "early.covet-plugin.toml").write_text(
        'priority = 1\nfailure_policy = "open"\n[config]\ngreeting = "from the manifest"\n')
    manager = PluginManager()
    manager.register(Marker())
    assert await manager.load_plugin_from_path(str(lib)) == ["early"]
    await manager.initialize_all()
    chain = manager.get_middleware_chain()
    assert [(e.name, e.priority, e.kind) for e in chain] == [("early", 1, "native"),
                                                              ("py_marker", 50, "middleware")]
    from covet_pipe.testing import call
    r = await call(Pipeline(echo_app, manager))
    assert r.status == 200
    assert '"x-early-greeting", "from the manifest"' in r.body.decode()
    assert {p["name"]: p["failure_policy"] for p in manager.list_plugins()}["early"] == "open"
    await manager.shutdown_all()


@pytest.mark.parametrize("how", ["config", "manifest"])
async def test_sandbox_requested_refuses_native_library(tmp_path: Path, how: str) -> None:
    lib = tmp_path / "boxed.so"
    lib.write_bytes(probe("boxed").read_bytes())
    config = PluginConfig(sandbox_enabled=how == "config")
    if how == "manifest":
        (tmp_path / "boxed.covet-plugin.toml").write_text("sandbox = true\n")
    manager = PluginManager(config)
    with pytest.raises(PluginLoadError, match=r"boxed\.so is to run sandboxed .* native plugins run "
                                              r"in-process and cannot be sandboxed"):
        await manager.load_plugin_from_path(str(lib))
    assert manager.list_plugins() == []


def test_loaded_plugin_keeps_library_after_source_file_is_deleted(tmp_path: Path) -> None:
    lib = tmp_path / "fleeting.so"
    lib.write_bytes(probe("fleeting").read_bytes())
    plugin = load_native(lib)
    lib.unlink()
    assert plugin.loaded_from is not None and Path(plugin.loaded_from).is_file()
    assert stats(plugin)["init"] == 0
    asyncio.run(_start_stop(plugin))
    assert stats(plugin)["shutdown"] == 1


async def _start_stop(plugin: NativePlugin) -> None:
    manager = PluginManager()
    manager.register(plugin)
    await manager.initialize_all()
    await manager.shutdown_all()


async def test_two_libraries_with_one_name_are_named_by_their_files(tmp_path: Path) -> None:
    first, second = tmp_path / "first.so", tmp_path / "second.so"
    first.write_bytes(probe("twin").read_bytes())
    second.write_bytes(probe("twin", tag="other").read_bytes())
    manager = PluginManager()
    await manager.load_plugin_from_path(str(first))
    with pytest.raises(PluginError, match=rf"^a plugin named 'twin' is already registered \({first}\); plugin "
                                          rf"names are unique: rename the plugin of {second} \(the name in its "
                                          r"descriptor, or name in its manifest\) or unload the other first$"):
        await manager.load_plugin_from_path(str(second))
