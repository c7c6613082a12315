"""The stubs of the compiled core type-check as documented."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent / "typing" / "examples.py"


def test_reveal_type_matches_expected_types_in_examples():
    pytest.importorskip("mypy")
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir=/dev/null",
         "--ignore-missing-imports", "--follow-imports=silent", str(EXAMPLES)],
        capture_output=True, text=True, cwd=Path(__file__).parent.parent,
    ).stdout
    revealed = {}
    for line in out.splitlines():
        m = re.match(rf"{re.escape(str(EXAMPLES))}:(\d+): note: Revealed type is \"(.*)\"", line)
        if m is None:
            m = re.match(r".*examples\.py:(\d+): note: Revealed type is \"(.*)\"", line)
        if m:
            revealed[int(m.group(1))] = m.group(2)
    expected = {}
    for number, line in enumerate(EXAMPLES.read_text().splitlines(), 1):
        m = re.search(r"# assert \"(.*)\"", line)
        if m and "reveal_type" in line:
            expected[number] = m.group(1)
    assert expected, "no reveal_type examples found"
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert not errors, "\n".join(errors)
    for number, want in expected.items():
        got = revealed.get(number)
        assert got is not None, f"line {number}: mypy revealed nothing\n{out}"
        assert got == want or got.endswith("." + want), f"line {number}: expected {want!r}, got {got!r}"


def test_core_stub_declares_every_name_the_package_imports_from_the_core():
    package = Path(__file__).parent.parent / "covet_pipe"
    stub = ast.parse((package / "_core.pyi").read_text())
    declared = set()
    for node in stub.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            declared.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            declared.add(node.target.id)
        elif isinstance(node, ast.Assign):
            declared.update(t.id for t in node.targets if isinstance(t, ast.Name))
    imported = {}
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "covet_pipe._core":
                for alias in node.names:
                    imported.setdefault(alias.name, path.relative_to(package).as_posix())
    assert imported, "found no imports from covet_pipe._core"
    missing = {name: where for name, where in imported.items() if name not in declared}
    assert not missing, f"_core.pyi lacks names imported from the core: {missing}"


def test_core_stub_declares_the_hooks_the_core_calls_on_its_subclass():
    stub = ast.parse((Path(__file__).parent.parent / "covet_pipe" / "_core.pyi").read_text())
    [core] = [n for n in stub.body if isinstance(n, ast.ClassDef) and n.name == "PipelineCore"]
    methods = {n.name for n in core.body if isinstance(n, ast.FunctionDef)}
    assert {"_first_request", "_lifespan", "call"} <= methods
    source = (Path(__file__).parent.parent / "covet_pipe" / "_dispatch.pxi").read_text()
    called = set(re.findall(r"self\.(_\w+)\(scope, receive, send\)", source))
    assert called == {"_first_request", "_lifespan"}, called


def test_make_typecheck_runs_stubtest_on_every_compiled_module():
    root = Path(__file__).parent.parent
    compiled = {".".join(p.relative_to(root).with_suffix("").parts): p
                for p in (root / "covet_pipe").rglob("*.pyx")}
    assert "covet_pipe._core" in compiled and "covet_pipe.server.http11._http11" in compiled
    makefile = (root / "Makefile").read_text()
    target = re.search(r"^typecheck:.*?(?=^\S|\Z)", makefile, re.M | re.S)
    assert target is not None, "Makefile has no typecheck target"
    stubtest = re.search(r"mypy\.stubtest\b((?:.*\\\n)*.*)", target.group(0))
    assert stubtest is not None, "make typecheck runs no stubtest"
    checked = set(stubtest.group(1).replace("\\\n", " ").split())
    for module, pyx in compiled.items():
        assert pyx.with_suffix(".pyi").is_file(), f"{module} has no stub beside {pyx.name}"
        assert module in checked, f"make typecheck's stubtest does not check {module}"
