"""``covet-pipe build FILE``: compile a native plugin (.c with the system compiler, .pyx with Cython)."""

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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from covet_pipe.cli.errors import EXIT_OK, BuildError, UsageError

__all__ = ["add_build", "run_build"]


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
        raise BuildError(
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
            raise BuildError(f"{src}: the C compiler failed (exit {proc.returncode}): {shlex.join(cmd)}")


def _build_pyx(src: Path, out: Path) -> None:
    if not src.stem.isidentifier():
        raise UsageError(
            f"{src}: a Cython plugin's file name is its module name, and {src.stem!r} is not a Python "
            f"identifier; rename it (e.g. {re.sub(r'[^0-9A-Za-z_]', '_', src.stem)}.pyx)"
        )
    if out.name.split(".", 1)[0] != src.stem:
        # The host imports the file and Python calls PyInit_<file stem>: they must agree.
        raise UsageError(
            f"-o {out}: a Cython plugin's file must be named after its module ({src.stem}.so, "
            f"since it defines PyInit_{src.stem}); use -o {out.parent / (src.stem + '.so')} "
            f"or rename {src.name}"
        )
    try:
        from Cython.Build import cythonize
        from Cython.Compiler.Errors import CompileError as CythonError
    except ImportError:
        raise BuildError("building a .pyx plugin needs Cython: pip install 'cython>=3.1'") from None
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
            raise BuildError(f"{src}: Cython found the errors above; fix them and build again") from None
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
            raise BuildError(f"{src}: the C compiler failed on Cython's output: {exc}") from None
        with _replacing(out) as tmp_out:
            shutil.copy(cmd.get_ext_fullpath(src.stem), tmp_out)


def run_build(args: argparse.Namespace) -> int:
    src = Path(args.file)
    if not src.is_file():
        raise UsageError(f"{src}: no such file; give the path of a plugin's .c or .pyx source")
    builders = {".c": _build_c, ".pyx": _build_pyx}
    builder = builders.get(src.suffix)
    if builder is None:
        raise UsageError(
            f"{src}: cannot build a {src.suffix or 'suffix-less'} file; "
            "covet-pipe build takes a C plugin (.c) or a Cython plugin (.pyx)"
        )
    out = _output_path(src, args.output)
    if not out.parent.is_dir():
        raise UsageError(f"-o {out}: the folder {out.parent} does not exist; create it first")
    if out.resolve() == src.resolve():
        raise UsageError(f"-o {out}: that is the source itself; name the .so to write, e.g. -o {src.stem}.so")
    builder(src, out)
    # The loader's own checks (ELF, entry symbol, ABI, descriptor), in a throwaway process: a library
    # that compiled but that no server would load is a failed build, and is not left where one looks.
    from covet_pipe.cli.check import native_problem
    problem = native_problem(out)
    if problem is not None:
        out.unlink(missing_ok=True)
        raise BuildError(f"{src} compiled, but the result cannot be loaded (removed): {problem}")
    print(f"built {out}")
    return EXIT_OK


def add_build(sub: Any) -> None:
    """The ``build`` subcommand."""
    build = sub.add_parser(
        "build", help="compile a native plugin (.c or .pyx) into a .so",
        description="Compile a C plugin (.c) with the system compiler ($CC, else cc) or a Cython "
                    "plugin (.pyx) with Cython, against covet_plugin.h.",
    )
    build.add_argument("file", help="the plugin's source: NAME.c or NAME.pyx")
    build.add_argument("-o", "--output", metavar="OUT",
                       help="the .so to write, or a folder for NAME.so (default: NAME.so beside the source)")
    build.set_defaults(run=run_build)
