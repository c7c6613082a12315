"""The covet-pipe command line: ``covet-pipe build`` compiles native plugins; ``covet-pipe serve`` serves an app."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import typing
from collections.abc import Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from covet_pipe.server.config import ServeConfig

__all__ = ["main"]

#: exit codes: 0 done, 1 the build failed or serving could not start, 2 bad usage or input
#: (the message says what to do)
EXIT_OK, EXIT_BUILD_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_START_FAILED = 1


class _UsageError(Exception):
    """Bad input: exit 2 with the message."""


class _BuildError(Exception):
    """The compiler (or Cython) refused: exit 1 with the message."""


class _StartError(Exception):
    """The app or its plugins could not start (an import raised, --strict refused): exit 1."""


def _include_dir() -> str:
    import covet_pipe
    return covet_pipe.get_include()


def _output_path(src: Path, out: str | None) -> Path:
    if out is None:
        return src.with_suffix(".so")
    path = Path(out)
    if path.is_dir():
        return path / (src.stem + ".so")
    return path


@contextlib.contextmanager
def _replacing(out: Path) -> Iterator[Path]:
    """A temporary path beside *out*, renamed over it on success.

    A server may have *out* loaded, and a plugin folder may be watched: rewriting a loaded library
    in place changes its pages under the process, and a watcher could pick up half a file.
    """
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _build_c(src: Path, out: Path) -> None:
    cc = shlex.split(os.environ.get("CC") or "cc")
    if shutil.which(cc[0]) is None:
        raise _BuildError(
            f"no C compiler: {cc[0]!r} is not on PATH; install one (Debian: apt-get install gcc) "
            "or point $CC at it"
        )
    with _replacing(out) as tmp_out:
        cmd = [*cc, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", f"-I{_include_dir()}",
               "-o", str(tmp_out), str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        # Warnings are the author's business; show them either way.
        sys.stderr.write(proc.stderr)
        if proc.returncode != 0:
            raise _BuildError(f"{src}: the C compiler failed (exit {proc.returncode}): {shlex.join(cmd)}")


def _build_pyx(src: Path, out: Path) -> None:
    if not src.stem.isidentifier():
        raise _UsageError(
            f"{src}: a Cython plugin's file name is its module name, and {src.stem!r} is not a Python "
            f"identifier; rename it (e.g. {re.sub(r'[^0-9A-Za-z_]', '_', src.stem)}.pyx)"
        )
    if out.name.split(".", 1)[0] != src.stem:
        # The host imports the file and Python calls PyInit_<file stem>: they must agree.
        raise _UsageError(
            f"-o {out}: a Cython plugin's file must be named after its module ({src.stem}.so, "
            f"since it defines PyInit_{src.stem}); use -o {out.parent / (src.stem + '.so')} "
            f"or rename {src.name}"
        )
    try:
        from Cython.Build import cythonize
        from Cython.Compiler.Errors import CompileError as CythonError
    except ImportError:
        raise _BuildError("building a .pyx plugin needs Cython: pip install 'cython>=3.1'") from None
    from setuptools import Distribution, Extension
    from setuptools.errors import CCompilerError, CompileError, LinkError

    import covet_pipe
    include = _include_dir()
    # The folder that holds the covet_pipe package, so `cimport covet_pipe.covet_plugin` resolves
    # (Cython searches sys.path too, but an editable install is not on it); and the source's own
    # folder, for the plugin's own .pxd files.
    package_parent = str(Path(covet_pipe.__file__).resolve().parent.parent)
    with tempfile.TemporaryDirectory(prefix="covet-build-") as tmp:
        ext = Extension(src.stem, [str(src)], include_dirs=[include])
        try:
            exts = cythonize(
                [ext], include_path=[package_parent, str(src.parent)], build_dir=tmp,
                language_level=3, quiet=True, force=True,
            )
        except CythonError:  # Cython has printed each error with its line
            raise _BuildError(f"{src}: Cython found the errors above; fix them and build again") from None
        dist = Distribution({"name": src.stem, "ext_modules": exts})
        dist.verbose = False
        cmd = dist.get_command_obj("build_ext")
        cmd.build_lib = os.path.join(tmp, "lib")
        cmd.build_temp = os.path.join(tmp, "temp")
        cmd.inplace = False
        cmd.ensure_finalized()
        try:
            cmd.run()
        except (CCompilerError, CompileError, LinkError) as exc:
            raise _BuildError(f"{src}: the C compiler failed on Cython's output: {exc}") from None
        with _replacing(out) as tmp_out:
            shutil.copy(cmd.get_ext_fullpath(src.stem), tmp_out)


def _build(args: argparse.Namespace) -> int:
    src = Path(args.file)
    if not src.is_file():
        raise _UsageError(f"{src}: no such file; give the path of a plugin's .c or .pyx source")
    builders = {".c": _build_c, ".pyx": _build_pyx}
    builder = builders.get(src.suffix)
    if builder is None:
        raise _UsageError(
            f"{src}: cannot build a {src.suffix or 'suffix-less'} file; "
            "covet-pipe build takes a C plugin (.c) or a Cython plugin (.pyx)"
        )
    out = _output_path(src, args.output)
    if not out.parent.is_dir():
        raise _UsageError(f"-o {out}: the folder {out.parent} does not exist; create it first")
    if out.resolve() == src.resolve():
        raise _UsageError(f"-o {out}: that is the source itself; name the .so to write, e.g. -o {src.stem}.so")
    builder(src, out)
    print(f"built {out}")
    return EXIT_OK


def _load_app(spec: str, app_dir: str) -> object:
    """The object named by ``module:attribute`` (``module`` alone means ``module:app``)."""
    import importlib
    module_name, _, attr = spec.partition(":")
    attr = attr or "app"
    if not module_name:
        raise _UsageError(f"{spec!r}: give the app as module:attribute, e.g. myapp:app")
    if "/" in module_name or module_name.endswith(".py") or not all(
            part.isidentifier() for part in module_name.split(".")):
        # a file path where a module name belongs: say the command that works
        file = Path(module_name if module_name.endswith(".py") else module_name + ".py")
        hint = (f"covet-pipe serve {file.stem}:{attr} --app-dir {file.parent}" if file.stem.isidentifier()
                else "rename the file to a Python identifier and give its module name")
        raise _UsageError(f"{spec!r}: the app is named by its module, not its file path; "
                          f"run: {hint}")
    path = os.path.abspath(app_dir)
    if path not in sys.path:
        sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise _UsageError(f"{spec!r}: no module named {module_name!r} under {path} or on sys.path; "
                              "run from the app's folder or pass --app-dir") from None
        raise _StartError(_import_failure(spec, module_name, exc)) from None
    except Exception as exc:
        raise _StartError(_import_failure(spec, module_name, exc)) from None
    obj: object = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise _UsageError(f"{spec!r}: module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise _UsageError(f"{spec!r}: {attr} is a {type(obj).__name__}, not an ASGI app (a callable)")
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


def _serve_config(args: argparse.Namespace) -> ServeConfig:
    """The ServeConfig the options of ``covet-pipe serve`` describe."""
    options = {f.name: getattr(args, f.name) for f in fields(ServeConfig)}
    options["trusted_proxies"] = [p for arg in args.trusted_proxies for p in arg.split(",") if p]
    try:
        return ServeConfig(**options)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None


def _serve(args: argparse.Namespace) -> int:
    import logging

    from covet_pipe.server.launch import run
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for folder in args.plugins:
        if not os.path.isdir(folder):
            raise _UsageError(f"--plugins {folder}: no such folder; give a folder of plugin files")
    config = _serve_config(args)
    app = _load_app(args.app, args.app_dir)
    from covet_pipe import Pipeline, PluginConfig, PluginManager
    from covet_pipe.errors import CovetPipeError
    from covet_pipe.server.workers import StrictRefused
    manager = app.manager if isinstance(app, Pipeline) else PluginManager(PluginConfig())
    if args.reload:
        # plugins reload in place when their files change (the app itself does not)
        manager.config.hot_reload = True
        manager.config.reload_on_change = True
    if args.strict:
        manager.config.strict = True
    for name in args.fail_open:
        manager.config.failure_policies[name] = "open"
    try:
        run(app, manager, config,
            plugin_dirs=[os.path.abspath(p) for p in args.plugins])
    except CovetPipeError as exc:
        raise _StartError(f"{'--strict: ' if args.strict else ''}{exc}") from None
    except StrictRefused as exc:      # --workers N: the worker printed every reason
        raise _StartError(f"--strict: {exc}") from None
    except RuntimeError as exc:
        if "lifespan startup failed" not in str(exc):
            raise
        raise _StartError(str(exc)) from None
    return EXIT_OK


def _add_config_options(serve: argparse.ArgumentParser) -> None:
    """One option for each ServeConfig field (``max_body_bytes`` is ``--max-body-bytes``), from its metadata."""
    d = ServeConfig()
    hints = typing.get_type_hints(ServeConfig)
    groups: dict[str, Any] = {"serve": serve,
                              "limits": serve.add_argument_group("limits", "sizes in bytes, times in seconds")}
    for f in fields(ServeConfig):
        default, kind = getattr(d, f.name), hints[f.name]
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        help = f.metadata.get("help", "")
        kwargs: dict[str, Any] = {"dest": f.name, "default": default}
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is list:
            kwargs.update(action="append", default=[], metavar=f.metadata.get("metavar"))
        elif typing.get_origin(kind) is typing.Literal:
            kwargs["choices"] = typing.get_args(kind)
        else:
            kwargs.update(type=kind, metavar="N" if kind in (int, float) else None)
        if default not in (None, "", []) and kind is not bool:
            help += f" (default {default})"
        groups[f.metadata.get("group", "serve")].add_argument(flag, help=help, **kwargs)


def _add_serve(sub: Any) -> None:
    serve = sub.add_parser(
        "serve", help="serve an ASGI app on covet-pipe's own listener (uvloop, HTTP/1.1, protocol plugins)",
        description="Serve an ASGI 3 app behind the plugin chain: covet-pipe serve myapp:app "
                    "--host 127.0.0.1 --port 8000 --plugins ./plugins. An app that is already a "
                    "covet_pipe.Pipeline keeps its manager; --plugins loads folders into it.",
    )
    serve.add_argument("app", help="the app as module:attribute (e.g. myapp:app)")
    serve.add_argument("--plugins", action="append", default=[], metavar="DIR",
                       help="a folder of plugins to load (repeatable)")
    serve.add_argument("--reload", action="store_true",
                       help="reload plugins in place when their files change (hot_reload and reload_on_change)")
    serve.add_argument("--strict", action="store_true",
                       help="refuse to start when any plugin fails to load or start, naming every failure "
                            "(PluginConfig strict); without it a failed plugin answers 503 in its place")
    serve.add_argument("--fail-open", action="append", default=[], metavar="PLUGIN",
                       help="serve without PLUGIN (a name or file) when it fails, instead of 503 in its "
                            "place (failure_policy open; repeatable)")
    serve.add_argument("--app-dir", default=".", help="folder to import the app from (default: .)")
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    _add_config_options(serve)
    serve.set_defaults(run=_serve)


def _parser() -> argparse.ArgumentParser:
    from covet_pipe import __version__
    from covet_pipe._core import ABI_MAJOR, ABI_MINOR
    parser = argparse.ArgumentParser(prog="covet-pipe", description=__doc__)
    parser.add_argument("--version", action="version",
                        version=f"covet-pipe {__version__} (native ABI {ABI_MAJOR}.{ABI_MINOR}, Python "
                                f"{sys.version.split()[0]})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    build = sub.add_parser(
        "build", help="compile a native plugin (.c or .pyx) into a .so",
        description="Compile a C plugin (.c) with the system compiler ($CC, else cc) or a Cython "
                    "plugin (.pyx) with Cython, against covet_plugin.h.",
    )
    build.add_argument("file", help="the plugin's source: NAME.c or NAME.pyx")
    build.add_argument("-o", "--output", metavar="OUT",
                       help="the .so to write, or a folder for NAME.so (default: NAME.so beside the source)")
    build.set_defaults(run=_build)
    _add_serve(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return int(args.run(args))
    except _UsageError as exc:
        print(f"covet-pipe {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except _BuildError as exc:
        print(f"covet-pipe {args.command}: {exc}", file=sys.stderr)
        return EXIT_BUILD_FAILED
    except _StartError as exc:
        print(f"covet-pipe {args.command}: {exc}", file=sys.stderr)
        return EXIT_START_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
