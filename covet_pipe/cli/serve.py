"""``covet-pipe serve APP``: serve an ASGI app behind the plugin chain on covet-pipe's own listener.

Its options are made from :class:`~covet_pipe.server.config.ServeConfig`'s fields (``max_body_bytes``
is ``--max-body-bytes``), plus the ones about the app and its plugins.
"""

from __future__ import annotations

import argparse
import os
import sys
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

from covet_pipe.cli.errors import EXIT_OK, StartError, UsageError
from covet_pipe.server.config import ServeConfig

__all__ = ["add_serve", "run_serve", "serve_config"]


def _load_app(spec: str, app_dir: str) -> object:
    """The object named by ``module:attribute`` (``module`` alone means ``module:app``)."""
    import importlib
    module_name, _, attr = spec.partition(":")
    attr = attr or "app"
    if not module_name:
        raise UsageError(f"{spec!r}: give the app as module:attribute, e.g. myapp:app")
    if "/" in module_name or module_name.endswith(".py") or not all(
            part.isidentifier() for part in module_name.split(".")):
        # a file path where a module name belongs: say the command that works
        file = Path(module_name if module_name.endswith(".py") else module_name + ".py")
        hint = (f"covet-pipe serve {file.stem}:{attr} --app-dir {file.parent}" if file.stem.isidentifier()
                else "rename the file to a Python identifier and give its module name")
        raise UsageError(f"{spec!r}: the app is named by its module, not its file path; "
                          f"run: {hint}")
    path = os.path.abspath(app_dir)
    if path not in sys.path:
        sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UsageError(f"{spec!r}: no module named {module_name!r} under {path} or on sys.path; "
                              "run from the app's folder or pass --app-dir") from None
        raise StartError(_import_failure(spec, module_name, exc)) from None
    except Exception as exc:
        raise StartError(_import_failure(spec, module_name, exc)) from None
    obj: object = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"{spec!r}: module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise UsageError(f"{spec!r}: {attr} is a {type(obj).__name__}, not an ASGI app (a callable)")
    return obj


def _import_failure(spec: str, module_name: str, exc: BaseException) -> str:
    """What importing the app raised, with where in the app's own code, and what to do."""
    import traceback
    frames = traceback.extract_tb(exc.__traceback__)
    # the innermost frame outside importlib's machinery is where the app's code raised
    own = [f for f in frames if "importlib" not in f.filename and not f.filename.startswith("<frozen")]
    at = f" at {own[-1].filename}:{own[-1].lineno}" if own else ""
    if isinstance(exc, SyntaxError):
        at = f" at {exc.filename}:{exc.lineno}"
        what = f"SyntaxError: {exc.msg}"
    else:
        what = f"{type(exc).__name__}: {exc}"
    return (f"{spec!r}: importing {module_name!r} raised {what}{at}; fix the app's module-level code "
            f"(python -c 'import {module_name}' shows the whole traceback)")


def serve_config(args: argparse.Namespace) -> ServeConfig:
    """The ServeConfig the options of ``covet-pipe serve`` describe."""
    options = {f.name: getattr(args, f.name) for f in fields(ServeConfig)}
    options["trusted_proxies"] = [p for arg in args.trusted_proxies for p in arg.split(",") if p]
    try:
        return ServeConfig(**options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def run_serve(args: argparse.Namespace) -> int:
    import logging

    from covet_pipe.server.launch import run
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for folder in args.plugins:
        if not os.path.isdir(folder):
            raise UsageError(f"--plugins {folder}: no such folder; give a folder of plugin files")
    pins = _pins(args.pin)
    config = serve_config(args)
    if config.admin is not None:
        from covet_pipe.server.admin_port import admin_token
        try:
            admin_token(config)         # refused before anything starts: no token, no admin port
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    app = _load_app(args.app, args.app_dir)
    from covet_pipe import Pipeline, PluginConfig, PluginManager
    from covet_pipe.errors import CovetPipeError
    from covet_pipe.server.workers import StrictRefused
    manager = app.manager if isinstance(app, Pipeline) else PluginManager(PluginConfig())
    if args.reload:
        # plugins reload in place when their files change (the app itself does not)
        manager.config.hot_reload = True
        manager.config.reload_on_change = True
    if config.admin is not None:
        manager.config.hot_reload = True    # `covet-pipe reload NAME` reloads on demand
    if args.strict:
        manager.config.strict = True
    for name in args.fail_open:
        manager.config.failure_policies[name] = "open"
    if args.fleet is not None:
        _join_fleet(manager.config, args)
    if not args.entry_points:
        manager.config.entry_points = False
    manager.config.plugin_hashes.update(pins)
    # a list (even an empty one) discovers: the --plugins folders and the installed plugin packages;
    # --no-entry-points without --plugins loads none here
    dirs = [os.path.abspath(p) for p in args.plugins]
    try:
        run(app, manager, config, plugin_dirs=dirs if dirs or args.entry_points else None)
    except CovetPipeError as exc:
        raise StartError(f"{'--strict: ' if args.strict else ''}{exc}") from None
    except StrictRefused as exc:      # --workers N: the worker printed every reason
        raise StartError(f"--strict: {exc}") from None
    except OSError as exc:            # a port that is taken: the message names the flag to change
        if exc.strerror is None or not exc.strerror.startswith("covet-pipe serve: "):
            raise
        raise StartError(exc.strerror[len("covet-pipe serve: "):]) from None
    except RuntimeError as exc:
        if "lifespan startup failed" not in str(exc):
            raise
        raise StartError(str(exc)) from None
    return EXIT_OK


def _pins(words: list[str]) -> dict[str, str]:
    """--pin NAME=sha256:HEX, each checked (PluginConfig plugin_hashes)."""
    from covet_pipe.pinning import HASH
    pins = {}
    for word in words:
        name, _, pin = word.partition("=")
        if not name or not HASH.match(pin):
            raise UsageError(f"--pin {word}: expected NAME=sha256:HEX (64 lower-case hex digits), as "
                             "`covet-pipe plugins --hash` prints it")
        pins[name] = pin
    return pins


def _join_fleet(plugin_config: Any, args: argparse.Namespace) -> None:
    """--fleet URL: reloads reach every worker of every host on that Redis (hot_reload follows)."""
    from covet_pipe.errors import ConfigError
    plugin_config.hot_reload = True
    plugin_config.fleet, plugin_config.fleet_name = args.fleet, args.fleet_name
    plugin_config.fleet_password_file = args.fleet_password_file
    from covet_pipe.redis_url import password_from
    try:
        plugin_config.check_fleet()
        password_from(password_file=args.fleet_password_file, who="--fleet-password-file")
    except (ConfigError, ValueError) as exc:
        raise UsageError(f"--fleet: {exc}") from None


def _add_config_options(serve: argparse.ArgumentParser) -> None:
    """One option for each ServeConfig field (``max_body_bytes`` is ``--max-body-bytes``), from its metadata."""
    d = ServeConfig()
    hints = typing.get_type_hints(ServeConfig)
    groups: dict[str, Any] = {
        "serve": serve,
        "limits": serve.add_argument_group("limits", "sizes in bytes, times in seconds"),
        "admin": serve.add_argument_group("admin API", "list, health and reload on a port of its own "
                                                       "(docs/cli.md); never served without a token"),
    }
    for f in fields(ServeConfig):
        default, kind = getattr(d, f.name), hints[f.name]
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        help = f.metadata.get("help", "")
        kwargs: dict[str, Any] = {"dest": f.name, "default": default}
        optional = [a for a in typing.get_args(kind) if a is not type(None)]
        if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(optional) == 1:
            kind = optional[0]                  # `str | None`: a value, or the default None
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is list:
            kwargs.update(action="append", default=[], metavar=f.metadata.get("metavar"))
        elif typing.get_origin(kind) is typing.Literal:
            kwargs["choices"] = typing.get_args(kind)
        else:
            kwargs.update(type=kind, metavar="N" if kind in (int, float) else f.metadata.get("metavar"))
        if default not in (None, "", []) and kind is not bool:
            help += f" (default {default})"
        groups[f.metadata.get("group", "serve")].add_argument(flag, help=help, **kwargs)


def add_serve(sub: Any) -> None:
    """The ``serve`` subcommand."""
    serve = sub.add_parser(
        "serve", help="serve an ASGI app on covet-pipe's own listener (uvloop, HTTP/1.1, protocol plugins)",
        description="Serve an ASGI 3 app behind the plugin chain: covet-pipe serve myapp:app "
                    "--host 127.0.0.1 --port 8000 --plugins ./plugins. An app that is already a "
                    "covet_pipe.Pipeline keeps its manager; --plugins loads folders into it.",
    )
    serve.add_argument("app", help="the app as module:attribute (e.g. myapp:app)")
    serve.add_argument("--plugins", action="append", default=[], metavar="DIR",
                       help="a folder of plugins to load (repeatable)")
    serve.add_argument("--entry-points", action=argparse.BooleanOptionalAction, default=True,
                       help="load the installed plugin packages (the covet_pipe.plugins entry points, see "
                            "`covet-pipe plugins`) into every worker; --no-entry-points serves only the "
                            "--plugins folders and the app's own plugins (default: on)")
    serve.add_argument("--pin", action="append", default=[], metavar="NAME=sha256:HEX",
                       help="load the plugin package (distribution or entry point name) or plugin file NAME "
                            "only when its content hash is this one, else refuse it (PluginConfig "
                            "plugin_hashes; `covet-pipe plugins --hash` prints the hashes; repeatable)")
    serve.add_argument("--reload", action="store_true",
                       help="reload plugins in place when their files change (hot_reload and reload_on_change)")
    serve.add_argument("--strict", action="store_true",
                       help="refuse to start when any plugin fails to load or start, naming every failure "
                            "(PluginConfig strict); without it a failed plugin answers 503 in its place")
    serve.add_argument("--fail-open", action="append", default=[], metavar="PLUGIN",
                       help="serve without PLUGIN (a name or file) when it fails, instead of 503 in its "
                            "place (failure_policy open; repeatable)")
    fleet = serve.add_argument_group("fleet", "a reload on one worker reaches every worker of every host "
                                              "sharing the Redis and the fleet name (docs/scaling.md)")
    fleet.add_argument("--fleet", metavar="REDIS_URL", help="the fleet's Redis: redis://HOST:PORT/DB, rediss://... "
                                                            "or unix:///PATH (PluginConfig fleet)")
    fleet.add_argument("--fleet-name", default="default", metavar="NAME",
                       help="workers with the same Redis and name reload together (default: default)")
    fleet.add_argument("--fleet-password-file", metavar="FILE",
                       help="the Redis password is this file's first line (else the URL's)")
    serve.add_argument("--app-dir", default=".", help="folder to import the app from (default: .)")
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    _add_config_options(serve)
    serve.set_defaults(run=run_serve)
