"""Discovery of Python plugins from plugin_paths (files, packages, manifests) and entry points."""

from __future__ import annotations

import textwrap
from pathlib import Path

import httpx
import pytest

from covet_pipe import PluginConfig, PluginLoadError, PluginManager, wrap
from tests.conftest import text_app

HOOK_PLUGIN = """
from covet_pipe import MiddlewarePlugin

class {cls}(MiddlewarePlugin):
    name = "{name}"
    version = "{version}"
    priority = {priority}

    def process_response(self, response, ctx):
        response.headers.add("x-plugin", "{name}-{version}")

def create_plugin(config):
    p = {cls}()
    p.config = config
    return p
"""


def write_plugin(folder: Path, stem: str, name: str, *, version: str = "1.0.0", priority: int = 100) -> Path:
    path = folder / f"{stem}.py"
    path.write_text(HOOK_PLUGIN.format(cls=name.title().replace("_", ""), name=name, version=version,
                                       priority=priority))
    return path


async def test_load_plugins_from_folder_loads_files_and_packages(tmp_path):
    write_plugin(tmp_path, "alpha", "alpha")
    pkg = tmp_path / "beta_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .impl import create_plugin\n")
    write_plugin(pkg, "impl", "beta")
    (tmp_path / "_private.py").write_text("raise RuntimeError('never imported')\n")
    manager = PluginManager(PluginConfig(plugin_paths=[str(tmp_path)], entry_points=False))
    report = await manager.load_plugins()
    assert sorted(report.loaded) == ["alpha", "beta"]
    assert report.failed == {}
    await manager.initialize_all()
    assert [e.name for e in manager.get_middleware_chain()] == ["alpha", "beta"]


async def test_broken_plugin_file_is_reported_by_name_and_others_load(tmp_path):
    write_plugin(tmp_path, "good", "good")
    (tmp_path / "broken.py").write_text("def oops(:\n    pass\n")
    (tmp_path / "raises.py").write_text("raise ImportError('missing thing')\n")
    (tmp_path / "nofactory.py").write_text("x = 1\n")
    manager = PluginManager(PluginConfig(plugin_paths=[str(tmp_path)], entry_points=False))
    report = await manager.load_plugins()
    assert report.loaded == ["good"]
    failed = {Path(k).name: v for k, v in report.failed.items()}
    assert "syntax error at line 1" in failed["broken.py"] and "broken.py" in failed["broken.py"]
    assert "ImportError: missing thing" in failed["raises.py"]
    assert "neither create_plugin(config) nor a module-level `plugin`" in failed["nofactory.py"]


async def test_discovered_plugin_serves_through_uvicorn(tmp_path, serve):
    write_plugin(tmp_path, "served", "served")
    manager = PluginManager(PluginConfig(plugin_paths=[str(tmp_path)], entry_points=False))
    await manager.load_plugins()
    with serve(wrap(text_app, manager)) as s:
        assert httpx.get(s.url + "/").headers["x-plugin"] == "served-1.0.0"


async def test_plugin_paths_expand_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".covet" / "plugins").mkdir(parents=True)
    write_plugin(tmp_path / ".covet" / "plugins", "homey", "homey")
    config = PluginConfig(plugin_paths=["~/.covet/plugins"], entry_points=False)
    assert config.plugin_paths == [str(tmp_path / ".covet" / "plugins")]
    report = await PluginManager(config).load_plugins()
    assert report.loaded == ["homey"]


async def test_missing_plugin_path_is_reported_not_raised(tmp_path):
    manager = PluginManager(PluginConfig(plugin_paths=[str(tmp_path / "nope")], entry_points=False))
    report = await manager.load_plugins()
    assert report.loaded == []
    assert "does not exist" in report.failed[str(tmp_path / "nope")]


async def test_manifest_sets_priority_and_config(tmp_path):
    write_plugin(tmp_path, "early", "early", priority=500)
    write_plugin(tmp_path, "late", "late", priority=100)
    (tmp_path / "early.covet-plugin.toml").write_text(textwrap.dedent("""
        name = "early"
        priority = 1
        [config]
        greeting = "hi"
    """))
    manager = PluginManager(PluginConfig(plugin_paths=[str(tmp_path)], entry_points=False))
    await manager.load_plugins()
    await manager.initialize_all()
    assert [e.name for e in manager.get_middleware_chain()] == ["early", "late"]
    assert manager.get_plugin("early").config == {"greeting": "hi"}


@pytest.mark.parametrize("content, message", [
    ('priority = "high"', "priority: expected `int`, got `str` ('high')"),
    ('colour = "red"', "unknown field 'colour'"),
    ('[permissions]\nmemory_limit = "lots"', "memory_limit: expected a size such as '100MB'"),
    ('name = ', "is not valid TOML"),
], ids=["wrong-type", "unknown-field", "bad-size", "bad-toml"])
async def test_bad_manifest_names_file_and_field(tmp_path, content, message):
    write_plugin(tmp_path, "thing", "thing")
    (tmp_path / "thing.covet-plugin.toml").write_text(content + "\n")
    report = await PluginManager(PluginConfig(plugin_paths=[str(tmp_path)], entry_points=False)).load_plugins()
    why = report.failed[str(tmp_path / "thing.py")]
    assert message in why
    assert "thing.covet-plugin.toml" in why


async def test_manifest_asking_for_sandbox_never_imports_the_plugin_in_the_host(tmp_path):
    # Importing this in the host would end the test run: only the helper may import it.
    (tmp_path / "evil.py").write_text("raise SystemExit('imported in the host!')\n")
    (tmp_path / "evil.covet-plugin.toml").write_text("sandbox = true\n")
    report = await PluginManager(PluginConfig(plugin_paths=[str(tmp_path)], entry_points=False)).load_plugins()
    why = report.failed[str(tmp_path / "evil.py")]
    assert "the sandboxed helper could not start the plugin" in why
    assert "imported in the host!" in why


async def test_broken_native_library_in_plugin_path_is_reported_and_others_load(tmp_path):
    (tmp_path / "libthing.so").write_bytes(b"\x7fELF")
    write_plugin(tmp_path, "fine", "fine")
    report = await PluginManager(PluginConfig(plugin_paths=[str(tmp_path)], entry_points=False)).load_plugins()
    assert "cannot be loaded: it is truncated" in report.failed[str(tmp_path / "libthing.so")]
    assert report.loaded == ["fine"]


async def test_load_plugin_from_path_gives_fresh_module_each_time(tmp_path):
    path = write_plugin(tmp_path, "fresh", "fresh")
    manager = PluginManager(PluginConfig(entry_points=False))
    assert await manager.load_plugin_from_path(str(path)) == ["fresh"]
    first = manager.get_plugin("fresh")
    await manager.unload_plugin("fresh")
    await manager.load_plugin_from_path(str(path))
    assert type(manager.get_plugin("fresh")) is not type(first)


async def test_load_plugin_from_path_missing_file_raises_with_path(tmp_path):
    with pytest.raises(PluginLoadError, match="does not exist"):
        await PluginManager().load_plugin_from_path(str(tmp_path / "ghost.py"))


def make_distribution(root: Path, dist: str, module: str, source: str, entry: str) -> None:
    """A real installed distribution: a module and its .dist-info with entry_points.txt."""
    (root / f"{module}.py").write_text(source)
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[covet_pipe.plugins]\n{entry}\n")


async def test_entry_point_plugins_are_loaded(tmp_path, monkeypatch):
    make_distribution(tmp_path, "covet_ep_demo", "covet_ep_demo_mod",
                      HOOK_PLUGIN.format(cls="EpDemo", name="ep_demo", version="2.0.0", priority=5),
                      "ep_demo = covet_ep_demo_mod:create_plugin")
    make_distribution(tmp_path, "covet_ep_bad", "covet_ep_bad_mod", "raise ValueError('bad dist')\n",
                      "ep_bad = covet_ep_bad_mod:create_plugin")
    monkeypatch.syspath_prepend(str(tmp_path))
    manager = PluginManager(PluginConfig())
    report = await manager.load_plugins()
    assert "ep_demo" in report.loaded
    bad = [v for k, v in report.failed.items() if "ep_bad" in k]
    assert bad and "ValueError: bad dist" in bad[0]
    again = await manager.load_plugins()   # a second call reports it loaded, and does not register it twice
    assert again.loaded.count("ep_demo") == 1 and not any("ep_demo" in k for k in again.failed)
    assert [p["name"] for p in manager.list_plugins()].count("ep_demo") == 1


async def test_entry_points_off_skips_them(tmp_path, monkeypatch):
    make_distribution(tmp_path, "covet_ep_off", "covet_ep_off_mod",
                      HOOK_PLUGIN.format(cls="EpOff", name="ep_off", version="1.0", priority=5),
                      "ep_off = covet_ep_off_mod:create_plugin")
    monkeypatch.syspath_prepend(str(tmp_path))
    report = await PluginManager(PluginConfig(entry_points=False)).load_plugins()
    assert "ep_off" not in report.loaded


def test_load_path_decides_sandboxing_once_and_honours_the_host_asking_for_it(tmp_path):
    from covet_pipe.discovery import SandboxRequested, load_path
    path = write_plugin(tmp_path, "asked", "asked")
    config = PluginConfig()
    assert [r.name for r in load_path(path, config)] == ["asked"]      # in-process by default
    with pytest.raises(SandboxRequested) as caught:
        load_path(path, config, sandbox=True)
    assert caught.value.spec.path == str(path) and caught.value.spec.policy is not None


@pytest.mark.parametrize("name, why", [
    ("missing.py", "does not exist"),
    ("notes.txt", "neither a .py file nor a package folder"),
    ("native.so", "native plugins run in-process and cannot be sandboxed"),
])
async def test_load_plugin_from_path_sandboxed_refuses_what_cannot_run_sandboxed_before_any_helper(tmp_path, name,
                                                                                                    why):
    if name != "missing.py":
        (tmp_path / name).write_bytes(b"not a plugin")
    manager = PluginManager()
    with pytest.raises(PluginLoadError, match=why):
        await manager.load_plugin_from_path(str(tmp_path / name), sandbox=True)
    assert manager.list_plugins() == []
