"""The package's rooms: no import circle, and no room reaching into another's private names.

The graph is read from the source (every ``import`` statement, also those inside functions and under
``if TYPE_CHECKING:``), so no circle can hide behind import order or a function-level import; and every
module is imported first, alone, in a fresh interpreter, so none depends on another having been
imported before it.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import covet_pipe
from covet_pipe._graph import _components

PACKAGE = Path(covet_pipe.__file__).resolve().parent

#: (importer, module) pairs that may import private names. Empty: the compiled core's family (``_core.pyx``
#: and its ``.pxi`` files, one extension) shares one namespace and needs no imports among its parts.
PRIVATE_ALLOWED: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        found[_module_name(path)] = path
    return found


SOURCES = _sources()
#: compiled modules (``_core.cpython-311-x86_64-linux-gnu.so``): their names count as modules too
COMPILED = {_module_name(p.parent / (p.name.split(".", 1)[0] + ".py")) for p in PACKAGE.rglob("*.so")}
MODULES = set(SOURCES) | COMPILED


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names (relative imports resolved against *importer*)."""
    if not node.level:
        return node.module or ""
    is_pkg = SOURCES[importer].name == "__init__.py"
    base = importer.split(".")
    base = base if is_pkg else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(name: str) -> list[tuple[str, str | None, int]]:
    """(module, imported name or None, line) for every import of a covet_pipe module in *name*'s source."""
    tree = ast.parse(SOURCES[name].read_text(), str(SOURCES[name]))
    out: list[tuple[str, str | None, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "covet_pipe":
                    out.append((alias.name, None, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(name, node)
            if module.split(".")[0] != "covet_pipe":
                continue
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                if sub in MODULES:              # `from covet_pipe.server import listener`
                    out.append((sub, None, node.lineno))
                else:
                    out.append((module, alias.name, node.lineno))
    return out


_CYTHON_IMPORT = re.compile(r"^\s*(?:from\s+(covet_pipe[\w.]*)\s+(?:c?import)\s+([\w, ()]+)|import\s+(covet_pipe[\w.]*))",
                            re.M)
_INCLUDE = re.compile(r'^include\s+"([^"]+)"', re.M)


def _compiled_imports(pyx: Path) -> set[str]:
    """The package modules a compiled module imports: its .pyx and every .pxi it includes."""
    found: set[str] = set()
    todo, seen = [pyx], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        text = path.read_text()
        todo += [path.parent / inc for inc in _INCLUDE.findall(text)]
        for module, names, plain in _CYTHON_IMPORT.findall(text):
            if plain:
                found.add(plain)
                continue
            for imported in re.split(r"[\s,()]+", names):
                sub = f"{module}.{imported}"
                found.add(sub if sub in MODULES else module)
    return found


def _graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (a package's ``__init__`` is an edge of its own)."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for name in SOURCES:
        for module, _, _ in _imports(name):
            if module != name and module in MODULES:
                graph[name].add(module)
    for pyx in PACKAGE.rglob("*.pyx"):
        name = _module_name(pyx.with_suffix(".py"))
        graph[name] = {m for m in _compiled_imports(pyx) if m in MODULES and m != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (the registry's Tarjan), each sorted."""
    return sorted(sorted(c) for c in _components(graph) if len(c) > 1)


def test_the_graph_sees_the_package() -> None:
    # the check below means something only if the walk finds the rooms and their imports
    graph = _graph()
    assert {"covet_pipe.manager", "covet_pipe.registry", "covet_pipe.server.listener"} <= set(graph)
    assert "covet_pipe.registry" in graph["covet_pipe.manager"]
    assert "covet_pipe.logsafe" in graph["covet_pipe._core"]      # read from _core.pyx and its .pxi files
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle() -> None:
    graph = _graph()
    # a package's __init__ re-exporting its own submodules is no circle: drop edges from a
    # submodule up to the package fronts that contain it (``from covet_pipe.errors import`` inside
    # covet_pipe.sandbox.x resolves to covet_pipe.errors, not to covet_pipe)
    for a, targets in graph.items():
        graph[a] = {b for b in targets if not (a.startswith(b + ".") and SOURCES.get(b, Path()).name == "__init__.py")}
    cycles = _cycles(graph)
    lines = []
    for cycle in cycles:
        members = set(cycle)
        edges = [f"{a} -> {b}" for a in cycle for b in sorted(graph[a] & members)]
        lines.append("  " + "; ".join(edges))
    assert not cycles, "import circles in covet_pipe (module -> imports):\n" + "\n".join(lines)


def test_no_private_name_crosses_rooms() -> None:
    crossings = []
    for name in sorted(SOURCES):
        for module, imported, line in _imports(name):
            if module == name:
                continue
            leaf = module.rsplit(".", 1)[-1]
            private_module = leaf.startswith("_") and not leaf.startswith("__") and not name.startswith(module + ".")
            private_name = imported is not None and imported.startswith("_") and not imported.startswith("__")
            if not (private_module or private_name):
                continue
            if (name, module) in PRIVATE_ALLOWED:
                continue
            # a package's own private modules are its rooms' business: covet_pipe.sandbox.x may use
            # covet_pipe.sandbox._seccomp; covet_pipe.x may not use covet_pipe.sandbox._seccomp
            parent = module.rsplit(".", 1)[0]
            if private_module and not private_name and (name == parent or name.startswith(parent + ".")):
                continue
            what = f"{module}.{imported}" if imported else module
            crossings.append(f"  {SOURCES[name].relative_to(PACKAGE.parent)}:{line} imports {what}")
    assert not crossings, ("private names used outside their room (make them public in their module, or move "
                           "the code):\n" + "\n".join(crossings))


def _importable() -> list[str]:
    return sorted(m for m in MODULES if not m.endswith("__main__"))


@pytest.mark.parametrize("module", _importable())
def test_each_module_imports_first_and_alone(module: str) -> None:
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"import {module} in a fresh interpreter failed:\n{proc.stderr[-3000:]}"
