"""`covet-pipe build`: C and Cython plugins to .so files; bad input says what to do."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from covet_pipe.cli import main
from tests.native._abi import CONST, EXAMPLES, build, c_descriptor, capsule_descriptor, ffi, import_extension

ELF_MAGIC = b"\x7fELF"


@pytest.mark.parametrize("name", ["header_rewrite", "api_key", "path_counter"])
def test_build_example_writes_elf_shared_object(built, name):
    so = built[name]
    assert so.read_bytes()[:4] == ELF_MAGIC


@pytest.mark.parametrize("name", ["header_rewrite", "api_key"])
def test_build_c_example_exports_only_the_entry_symbol(built, name):
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) is not installed")
    out = subprocess.run([nm, "-D", "--defined-only", str(built[name])], capture_output=True, text=True,
                         check=True).stdout
    symbols = {line.split()[-1] for line in out.splitlines() if line.split()[1:2] == ["T"]}
    assert symbols == {"covet_plugin_entry_v1"}


@pytest.mark.parametrize(("name", "priority", "flags", "hooks"), [
    ("header_rewrite", 300, 0, {"init", "shutdown", "on_request", "on_response"}),
    ("api_key", 100, 0, {"init", "shutdown", "on_request"}),
])
def test_build_c_example_descriptor_reads_through_cffi(built, name, priority, flags, hooks):
    lib, d = c_descriptor(built[name])
    assert d != ffi.NULL
    assert d.abi_version == (1 << 16) | 1 == CONST["COVET_ABI_VERSION"]
    assert d.struct_size == ffi.sizeof("covet_plugin_descriptor")
    assert d.requires_minor == 0
    assert ffi.string(d.name).decode() == name
    assert ffi.string(d.version) == b"1.0.0"
    assert (d.priority, d.flags, d.reserved) == (priority, flags, 0)
    assert d.dependencies == ffi.NULL and d.protocols == ffi.NULL
    all_hooks = {"init", "shutdown", "on_request", "on_response", "on_request_done"}
    assert {h for h in all_hooks if getattr(d, h) != ffi.NULL} == hooks
    del lib


def test_build_cython_example_imports_and_exports_descriptor_capsule(built):
    module = import_extension(built["path_counter"])
    name, d = capsule_descriptor(module)
    assert name == b"covet_plugin_entry_v1"
    assert d.abi_version == CONST["COVET_ABI_VERSION"]
    assert d.struct_size == ffi.sizeof("covet_plugin_descriptor")
    assert ffi.string(d.name) == b"path_counter"
    assert ffi.string(d.version) == b"1.0.0"
    assert d.flags == CONST["COVET_FLAG_FAIL_OPEN"]
    assert all(getattr(d, h) != ffi.NULL for h in ("init", "shutdown", "on_request", "on_response",
                                                    "on_request_done"))


def test_build_default_output_is_beside_the_source(tmp_path):
    src = tmp_path / "hr.c"
    shutil.copyfile(EXAMPLES / "header_rewrite" / "header_rewrite.c", src)
    proc = build(src)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "hr.so").read_bytes()[:4] == ELF_MAGIC
    assert f"built {tmp_path / 'hr.so'}" in proc.stdout


def test_build_cython_leaves_no_generated_c_beside_the_source(built):
    assert not (EXAMPLES / "path_counter" / "path_counter.c").exists()


def test_build_c_syntax_error_exits_1_with_compiler_message(tmp_path):
    src = tmp_path / "broken.c"
    src.write_text('#include "covet_plugin.h"\nint broken(void) { return 1 }\n')
    proc = build(src)
    assert proc.returncode == 1
    assert "broken.c:2" in proc.stderr and "error" in proc.stderr   # the compiler's own words
    assert "the C compiler failed" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.c"]   # no .so, no temporary left


def test_build_cython_error_exits_1_with_cython_message(tmp_path):
    src = tmp_path / "broken.pyx"
    src.write_text("from covet_pipe.covet_plugin cimport *\ncdef int f() noexcept:\n    return no_such_name\n")
    proc = build(src)
    assert proc.returncode == 1
    assert "no_such_name" in proc.stderr
    assert "Cython found the errors above" in proc.stderr


def test_build_without_compiler_exits_1_and_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CC", "no-such-compiler-here")
    assert main(["build", str(EXAMPLES / "api_key" / "api_key.c"), "-o", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "no C compiler: 'no-such-compiler-here' is not on PATH" in err and "$CC" in err


def test_build_unknown_extension_exits_2(tmp_path, capsys):
    src = tmp_path / "plugin.rs"
    src.write_text("fn main() {}\n")
    assert main(["build", str(src)]) == 2
    assert "takes a C plugin (.c) or a Cython plugin (.pyx)" in capsys.readouterr().err


def test_build_missing_file_exits_2(tmp_path, capsys):
    assert main(["build", str(tmp_path / "nope.c")]) == 2
    assert "nope.c: no such file" in capsys.readouterr().err


def test_build_cython_output_named_unlike_module_exits_2(tmp_path, capsys):
    src = EXAMPLES / "path_counter" / "path_counter.pyx"
    assert main(["build", str(src), "-o", str(tmp_path / "renamed.so")]) == 2
    assert "must be named after its module (path_counter.so" in capsys.readouterr().err


def test_build_cython_file_name_not_identifier_exits_2(tmp_path, capsys):
    src = tmp_path / "my-plugin.pyx"
    src.write_text("x = 1\n")
    assert main(["build", str(src)]) == 2
    assert "'my-plugin' is not a Python identifier; rename it (e.g. my_plugin.pyx)" in capsys.readouterr().err


def test_build_output_over_source_exits_2(tmp_path, capsys):
    src = tmp_path / "p.c"
    src.write_text("int x;\n")
    assert main(["build", str(src), "-o", str(src)]) == 2
    assert "that is the source itself" in capsys.readouterr().err
    assert src.read_text() == "int x;\n"


def test_build_output_in_missing_folder_exits_2(tmp_path, capsys):
    src = EXAMPLES / "api_key" / "api_key.c"
    assert main(["build", str(src), "-o", str(tmp_path / "no" / "x.so")]) == 2
    assert "does not exist; create it first" in capsys.readouterr().err


def _doc_sources() -> dict[str, str]:
    """The plugin sources that docs/native-plugins.md shows, by the file name on their first line."""
    import re
    doc = (EXAMPLES.parents[1] / "docs" / "native-plugins.md").read_text()
    found = {}
    for code in re.findall(r"```(?:c|cython)\n(.*?)```", doc, flags=re.S):
        m = re.match(r"(?:/\*|#) src/(\w+\.(?:c|pyx)):", code)
        if m:
            found[m.group(1)] = code
    return found


def test_docs_plugin_sources_build_and_describe_themselves(tmp_path):
    sources = _doc_sources()
    assert set(sources) == {"stamp.c", "hits.pyx"}
    for filename, code in sources.items():
        (tmp_path / filename).write_text(code)
        proc = build(tmp_path / filename)
        assert proc.returncode == 0, proc.stderr
        assert "warning" not in proc.stderr, proc.stderr
    lib, d = c_descriptor(tmp_path / "stamp.so")
    assert ffi.string(d.name) == b"stamp" and d.on_response != ffi.NULL
    _, d = capsule_descriptor(import_extension(tmp_path / "hits.so"))
    assert ffi.string(d.name) == b"hits" and d.struct_size == ffi.sizeof("covet_plugin_descriptor")
