"""``covet-pipe new NAME --kind python|sandboxed|c|cython``: scaffold a plugin that passes its own test at once.

The folder ``NAME/`` gets ``plugins/`` (what ``covet-pipe serve --plugins NAME/plugins`` loads: the plugin's
source, and its manifest where the kind needs one) and ``tests/test_NAME.py`` (pytest tests with the fixtures
of :mod:`covet_pipe.testing`: a native plugin built with ``covet_build`` when its ``.so`` is missing or older
than its source, loaded with ``covet_plugin`` as a server does, a request through it and its hooks called,
and ``plugins/`` served behind a real ``covet-pipe serve`` with ``covet_server``).
With ``--package`` it writes a pip-installable distribution instead: ``pyproject.toml`` (setuptools; an entry
point in the ``covet_pipe.plugins`` group; the classifier ``Framework :: covet-pipe``), ``README.md``,
``src/NAME/`` (the plugin, its manifest, ``py.typed``) and the same test, which loads ``src/NAME``. A python
plugin's entry point names its class; a C or Cython one's names ``create_plugin`` in ``src/NAME/__init__.py``,
which loads the library that ``setup.py`` (a setuptools Extension against the installed covet_plugin.h / .pxd)
compiled into the wheel; a sandboxed one's plugin code is package data (``src/NAME/sandboxed/``) that
``create_plugin`` (:mod:`covet_pipe.sandbox.packaged`) runs in its confined helper.
The files come from the templates in :mod:`covet_pipe.cli.templates`.
"""

from __future__ import annotations

import argparse
import keyword
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from covet_pipe.cli.errors import EXIT_OK, UsageError

__all__ = ["KINDS", "add_new", "run_new", "scaffold"]

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Kind:
    """What one kind of plugin is made of: ``(template, file under plugins/)`` pairs, and its source file."""

    files: tuple[tuple[str, str], ...]
    #: the file ``covet-pipe build`` compiles (None: nothing to build)
    source: str | None
    #: the file ``covet-pipe check`` and ``serve`` look at
    checked: str


KINDS: dict[str, Kind] = {
    "python": Kind((("plugin.py.tmpl", "{name}.py"),), None, "{name}.py"),
    "sandboxed": Kind((("plugin.py.tmpl", "{name}.py"), ("sandboxed.toml.tmpl", "{name}.covet-plugin.toml")),
                      None, "{name}.py"),
    "c": Kind((("plugin.c.tmpl", "{name}.c"),), "{name}.c", "{name}.so"),
    "cython": Kind((("plugin.pyx.tmpl", "{name}.pyx"),), "{name}.pyx", "{name}.so"),
}


def _template(name: str) -> Template:
    return Template(resources.files("covet_pipe.cli.templates").joinpath(name).read_text(encoding="utf-8"))


def check_name(name: str) -> None:
    """Refuse a NAME that cannot be a plugin's, module's and C identifier's name at once."""
    if not _NAME.match(name) or keyword.iskeyword(name):
        fixed = re.sub(r"[^a-z0-9_]", "_", name.lower()).lstrip("0123456789_") or "my_plugin"
        raise UsageError(f"{name!r} cannot name a plugin: it is its module's and its C symbols' name too, so use "
                         f"lower-case letters, digits and '_', starting with a letter (e.g. {fixed})")


#: ``--package``: (template, file under NAME/) pairs of a pip-installable distribution, by kind
PACKAGE_FILES: dict[str, tuple[tuple[str, str], ...]] = {
    "python": (("pyproject.toml.tmpl", "pyproject.toml"), ("README.md.tmpl", "README.md"),
               ("plugin.py.tmpl", "src/{name}/__init__.py"), ("package.toml.tmpl", "src/{name}/covet-plugin.toml")),
    "c": (("pyproject.toml.tmpl", "pyproject.toml"), ("README.md.tmpl", "README.md"),
          ("setup_native.py.tmpl", "setup.py"), ("MANIFEST.in.tmpl", "MANIFEST.in"),
          ("native_init.py.tmpl", "src/{name}/__init__.py"), ("plugin.c.tmpl", "src/{name}/{name}.c"),
          ("package.toml.tmpl", "src/{name}/covet-plugin.toml")),
    "cython": (("pyproject.toml.tmpl", "pyproject.toml"), ("README.md.tmpl", "README.md"),
               ("setup_native.py.tmpl", "setup.py"), ("MANIFEST.in.tmpl", "MANIFEST.in"),
               ("native_init.py.tmpl", "src/{name}/__init__.py"), ("plugin.pyx.tmpl", "src/{name}/{name}.pyx"),
               ("package.toml.tmpl", "src/{name}/covet-plugin.toml")),
    # the plugin's code is package data (sandboxed/), never imported by the server: covet_pipe.sandbox.packaged
    "sandboxed": (("pyproject.toml.tmpl", "pyproject.toml"), ("README.md.tmpl", "README.md"),
                  ("sandboxed_init.py.tmpl", "src/{name}/__init__.py"),
                  ("plugin.py.tmpl", "src/{name}/sandboxed/{name}.py"),
                  ("sandboxed.toml.tmpl", "src/{name}/sandboxed/{name}.covet-plugin.toml"),
                  ("package.toml.tmpl", "src/{name}/covet-plugin.toml")),
}

#: the native package's setup.py: the Extension list, by kind
_EXT_MODULES = {
    "c": "ext_modules = [library]",
    "cython": "from Cython.Build import cythonize  # noqa: E402\n\n"
              "ext_modules = cythonize([library], include_path=[COVET_PARENT], language_level=3)",
}


def _package_words(name: str, kind: str, covet_version: str) -> dict[str, str]:
    """The template words that differ between the kinds of a ``--package`` distribution."""
    native = kind in ("c", "cython")
    data = ["covet-plugin.toml", "py.typed"] + (["sandboxed/*.py", "sandboxed/*.toml"] if kind == "sandboxed" else [])
    requires = ["setuptools>=77"] + ([f"covet-pipe>={covet_version}"] if native else []) + \
        (["Cython>=3.1,<4"] if kind == "cython" else [])
    return {"kind": kind, "lang": {"c": "C", "cython": "Cython"}.get(kind, "Python"),
            "ext": {"c": "c", "cython": "pyx"}.get(kind, "py"),
            "entry": "create_plugin" if native or kind == "sandboxed" else "".join(p.capitalize() for p in name.split("_") if p),
            "build_requires": ", ".join(f'"{r}"' for r in requires),
            "build_note": " (setup.py compiles the library against the covet-pipe of the build environment)"
                          if native else "",
            "ext_modules": _EXT_MODULES.get(kind, ""),
            "package_data": ", ".join(f'"{d}"' for d in data)}


#: the generated test's second case (files in plugins/): the folder behind a real covet-pipe serve
_SERVED_TEST = Template('''

def test_${name}_serves_behind_covet_pipe_serve(covet_plugin: PluginFixture, covet_build: BuildFixture,
                                               covet_server: ServerFixture) -> None:
    load(covet_plugin, covet_build).close()          # built, if it is native
    server = covet_server(PLUGINS)
    reply = server.get("/")
    assert (reply.status, reply.text, reply.headers.get("$header")) == (200, "ok", "hello")
''')


def scaffold(name: str, kind: str, dest: Path, *, package: bool = False) -> list[Path]:
    """Write plugin *name* of *kind* into the folder *dest* (which must not exist, or be empty); the files written.

    :param package: a pip-installable distribution instead (``src/NAME/``, ``pyproject.toml`` with the entry point).
    """
    check_name(name)
    spec = KINDS[kind]
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"{dest} already exists and is not an empty folder; pick another NAME or --dir, "
                         "or remove it first")
    from covet_pipe import __version__
    words = {"name": name, "cls": "".join(p.capitalize() for p in name.split("_") if p) or "Plugin",
             "header": "x-" + name.replace("_", "-"),
             "source": repr(spec.source.format(name=name)) if spec.source else "None",
             "plugin_dir": f"src/{name}" if package else "plugins",
             "dist": "covet-pipe-" + name.replace("_", "-"),
             "covet_version": ".".join(__version__.split(".")[:2])}
    words.update(_package_words(name, kind, words["covet_version"]))
    words["check_target"] = f"src/{name}" if package else f"plugins/{name}.py"
    target = "" if package else spec.checked.format(name=name)
    words.update(target="/" + target if target else "", target_expr=f" / {target!r}" if target else "",
                 served_fixture="" if package else ", covet_server",
                 served_import="" if package else ", ServerFixture",
                 served_test="" if package else _SERVED_TEST.substitute(words))
    files = [(t, f.format(name=name)) for t, f in PACKAGE_FILES[kind]] if package else \
        [(t, "plugins/" + f.format(name=name)) for t, f in spec.files]
    written = []
    for template, target in files:
        path = dest / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_template(template).substitute(words), encoding="utf-8")
        written.append(path)
    if package:
        typed = dest / "src" / name / "py.typed"
        typed.write_text("")
        written.append(typed)
    (dest / "tests").mkdir(exist_ok=True)
    test = dest / "tests" / f"test_{name}.py"
    test.write_text(_template("test_plugin.py.tmpl").substitute(words), encoding="utf-8")
    written.append(test)
    return written


def run_new(args: argparse.Namespace) -> int:
    dest = Path(args.dir if args.dir is not None else args.name)
    written = scaffold(args.name, args.kind, dest, package=args.package)
    spec = KINDS[args.kind]
    for path in written:
        print(f"wrote {path}")
    if args.package:
        # a bare name is a requirement to pip, not a folder: ./NAME
        where = dest if dest.is_absolute() or str(dest).startswith(".") else f"./{dest}"
        # a native build compiles against the installed covet-pipe's header (isolated, pip fetches one)
        isolation = " --no-build-isolation" if args.kind in ("c", "cython") else ""
        print(f"next: python -m pytest {dest / 'tests'}; covet-pipe check {dest / 'src' / args.name}; "
              f"pip wheel --no-deps{isolation} -w dist {where}; pip install dist/*.whl; covet-pipe serve APP")
        return EXIT_OK
    plugins = dest / "plugins"
    steps = []
    if spec.source:
        steps.append(f"covet-pipe build {plugins / spec.source.format(name=args.name)}")
    steps += [f"covet-pipe check {plugins / spec.checked.format(name=args.name)}",
              f"python -m pytest {dest / 'tests'}",
              f"covet-pipe serve APP --plugins {plugins}"]
    print("next: " + "; ".join(steps))
    return EXIT_OK


def add_new(sub: Any) -> None:
    """The ``new`` subcommand."""
    new = sub.add_parser(
        "new", help="scaffold a plugin (python, sandboxed, c or cython) with its test",
        description="Write NAME/plugins/ (the plugin, and its manifest where its kind needs one) and "
                    "NAME/tests/test_NAME.py, a pytest test that passes as written. See docs/authoring.md.",
    )
    new.add_argument("name", help="the plugin's name: lower-case letters, digits and '_'")
    new.add_argument("--kind", choices=sorted(KINDS), default="python",
                     help="python (in-process), sandboxed (a confined helper process), c or cython (native); "
                          "default python")
    new.add_argument("--dir", metavar="DIR", help="the folder to write (default: NAME); it must not exist or be empty")
    new.add_argument("--package", action="store_true",
                     help="a pip-installable distribution (pyproject.toml, an entry point in the covet_pipe.plugins "
                          "group, manifest, README, test; for c and cython a setup.py that compiles the library "
                          "into the wheel)")
    new.set_defaults(run=run_new)
