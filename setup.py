"""Build covet-pipe's compiled dispatch core (metadata lives in pyproject.toml)."""
import os
import sys

from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError:  # pragma: no cover - exercised only without build deps
    sys.exit(
        "covet-pipe compiles its dispatch core with Cython: install Cython>=3.1 "
        "(pip install 'cython>=3.1') or build with 'pip install .', which fetches it."
    )

#: COVET_PIPE_DEBUG=1 (make debug): Cython writes annotated HTML beside the sources and compiles with linetrace
DEBUG = os.environ.get("COVET_PIPE_DEBUG", "") not in ("", "0")
SANITIZE = os.environ.get("COVET_PIPE_SANITIZE", "") not in ("", "0")

extra_compile = ["-O2"]
extra_link = []
if SANITIZE:
    extra_compile += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-O1"]
    extra_link += ["-fsanitize=address,undefined"]

extensions = [
    Extension(
        "covet_pipe._core",
        ["covet_pipe/_core.pyx"],
        include_dirs=["native_abi", "covet_pipe"],
        extra_compile_args=extra_compile,
        extra_link_args=extra_link,
    ),
    # covet-pipe serve: the HTTP/1.1 connection (one asyncio.Protocol per connection)
    Extension(
        "covet_pipe.server.http11._http11",
        ["covet_pipe/server/http11/_http11.pyx"],
        include_dirs=["covet_pipe/server/http11"],
        extra_compile_args=extra_compile,
        extra_link_args=extra_link,
    ),
    # the RESP protocol: the command parser and the reply encoders (covet_pipe.server.resp.codec's front)
    Extension(
        "covet_pipe.server.resp._resp",
        ["covet_pipe/server/resp/_resp.pyx"],
        extra_compile_args=extra_compile,
        extra_link_args=extra_link,
    ),
]

setup(
    # An editable install (`pip install -e .`, `make build`) as a plain path entry in a .pth file, not
    # setuptools' default import-hook finder for a flat layout: type checkers never run import hooks, so
    # with the finder mypy and pyright found neither covet_pipe nor its stubs (_core.pyi ...) without
    # MYPYPATH. Compat mode puts the checkout on sys.path, as `setup.py develop` did; pip's
    # `--config-settings editable_mode=strict` still picks the link-tree mode instead.
    options={"editable_wheel": {"mode": "compat"}},
    ext_modules=cythonize(
        extensions,
        language_level=3,
        annotate=DEBUG,
        compiler_directives={"linetrace": DEBUG, "embedsignature": True},
    ),
)
