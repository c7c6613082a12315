"""The covet-pipe command line as a user types it: the commands, --version, and `serve`'s options.

Building plugins is in tests/native/test_build.py, serving apps in tests/server/test_serve_cli.py;
these are the parts every command shares and the options `serve` takes from ServeConfig.
"""

from __future__ import annotations

import subprocess
import sys
import typing
from dataclasses import fields

import pytest

from covet_pipe import __version__
from covet_pipe._core import ABI_MAJOR, ABI_MINOR
from covet_pipe.cli import build_parser, main
from covet_pipe.cli.serve import serve_config
from covet_pipe.server.config import ServeConfig


def _config(*argv: str) -> ServeConfig:
    return serve_config(build_parser().parse_args(["serve", "myapp:app", *argv]))


def test_cli_without_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: covet-pipe" in capsys.readouterr().err


def test_cli_runs_as_module() -> None:
    proc = subprocess.run([sys.executable, "-m", "covet_pipe", "build", "--help"], capture_output=True,
                          text=True)
    assert proc.returncode == 0 and "NAME.c or NAME.pyx" in proc.stdout


def test_version_names_the_package_the_native_abi_and_python(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert f"covet-pipe {__version__}" in out
    assert f"native ABI {ABI_MAJOR}.{ABI_MINOR}" in out
    assert sys.version.split()[0] in out


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("build", "serve", "list", "health", "reload", "bench"):
        assert command in out


def test_serve_has_an_option_for_every_serve_config_field(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    for f in fields(ServeConfig):
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        assert flag in out, f"ServeConfig.{f.name} has no `covet-pipe serve {flag}` option"
        assert f.metadata.get("help"), f"ServeConfig.{f.name} has no help text"


def test_serve_defaults_are_serve_configs() -> None:
    assert _config() == ServeConfig()


def _sample(kind: typing.Any, default: typing.Any) -> tuple[list[str], typing.Any] | None:
    """Command-line words for a value unlike the default, and that value."""
    if kind is bool:
        return [], not default
    if kind is int:
        return [str(default + 7)], default + 7
    if kind is float:
        return [str(default + 1.5)], default + 1.5
    if typing.get_origin(kind) is typing.Literal:
        other = next(v for v in typing.get_args(kind) if v != default)
        return [other], other
    return None


@pytest.mark.parametrize("name", [f.name for f in fields(ServeConfig)])
def test_each_serve_option_reaches_the_config(name: str) -> None:
    f = next(f for f in fields(ServeConfig) if f.name == name)
    kind = typing.get_type_hints(ServeConfig)[name]
    default = getattr(ServeConfig(), name)
    flag = f.metadata.get("flag") or "--" + name.replace("_", "-")
    if name == "host":
        words, want = ["127.0.0.2"], "127.0.0.2"
    elif name == "root_path":
        words, want = ["/api"], "/api"
    elif name == "admin":
        words, want = ["127.0.0.1:9901"], "127.0.0.1:9901"
    elif name == "admin_token_file":
        words, want = ["admin-token"], "admin-token"
    elif name == "trusted_proxies":
        config = _config(flag, "10.0.0.1", flag, "10.1.0.0/16,127.0.0.1")
        assert config.trusted_proxies == ["10.0.0.1", "10.1.0.0/16", "127.0.0.1"]
        return
    else:
        sample = _sample(kind, default)
        assert sample is not None, f"no sample value for ServeConfig.{name}: {kind}"
        words, want = sample
    if kind is bool:
        flag = flag if want else "--no-" + flag[2:]
    config = _config(flag, *words)
    assert getattr(config, name) == want
    assert config == ServeConfig(**{name: want})


def test_serve_bad_option_value_names_the_field(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "myapp:app", "--ws-max-size", "0"]) == 2
    assert "ServeConfig.ws_max_size: expected an integer >= 1, got 0" in capsys.readouterr().err
