"""Tiny plugin distributions built in a test's folder: a pyproject with an entry point, a module, a manifest.

``plugin_wheel(...)`` builds one into a wheel with the test run's setuptools (no build isolation, no
index); ``plugin_venv`` (session) is a fresh venv with covet-pipe's wheel from :mod:`tests._dist`, into
which the tests pip-install these and uninstall them again (:func:`installed`).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterator

import pytest

from tests._dist import STEP, Dist, run

PYPROJECT = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "{version}"
requires-python = ">=3.11"
dependencies = [{requires}]
classifiers = ["Framework :: covet-pipe"]

[project.entry-points."covet_pipe.plugins"]
{name} = "{module}:{cls}"

[tool.setuptools]
packages = ["{module}"]

[tool.setuptools.package-data]
{module} = ["covet-plugin.toml"]
"""

MODULE = '''
from covet_pipe import MiddlewarePlugin


class {cls}(MiddlewarePlugin):
    name = "{name}"
    version = "{version}"

    def process_response(self, response, ctx):
        response.headers.set("x-{name}", "{version}")
'''


def plugin_wheel(where: Path, name: str, version: str = "1.0.0", *,
                 requires: str | None = "covet-pipe>=0.1", abi: str | None = None) -> Path:
    """Write the distribution ``covet-pipe-NAME`` under *where* and build its wheel into ``where/wheels``.

    Built with this test run's setuptools (a fresh venv has no ``wheel`` for its old setuptools), the way an
    author builds it before it is installed elsewhere. The plugin stamps ``x-NAME: VERSION`` on every response; *requires* is its Requires-Dist on covet-pipe,
    *abi* the ``abi`` of the manifest it ships.
    """
    module, cls = f"covet_pipe_{name}", name.capitalize()
    root = where / f"src-{name}-{version}"
    (root / module).mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT.format(
        dist=f"covet-pipe-{name}", version=version, name=name, module=module, cls=cls,
        requires=f'"{requires}"' if requires else ""))
    (root / module / "__init__.py").write_text(textwrap.dedent(MODULE.format(cls=cls, name=name, version=version)))
    (root / module / "covet-plugin.toml").write_text(f'name = "{name}"\n' + (f'abi = "{abi}"\n' if abi else ""))
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(where / "wheels"),
         str(root)], cwd=where)
    (wheel,) = (where / "wheels").glob(f"covet_pipe_{name}-{version}-*.whl")
    return wheel


@pytest.fixture(scope="session")
def plugin_venv(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding covet-pipe's wheel (the one :mod:`tests._dist` built), for plugin packages."""
    venv = tmp_path_factory.mktemp("plugin-venv") / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=venv.parent)
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(dist.wheel)], cwd=venv.parent)
    return venv


@contextlib.contextmanager
def installed(venv: Path, *dists: str) -> Iterator[None]:
    """Uninstall the distributions *dists* from *venv* when the block ends (the venv is shared)."""
    try:
        yield
    finally:
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "uninstall", "-q", "-y", *dists],
                       capture_output=True, timeout=STEP, stdin=subprocess.DEVNULL)
