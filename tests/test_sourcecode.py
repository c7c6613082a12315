"""Source checks of the native ABI: covet_plugin.h's growth rules and names, and its Cython mirror."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEADER = ROOT / "native_abi" / "covet_plugin.h"
PXD = ROOT / "covet_pipe" / "covet_plugin.pxd"

#: the structs that cross the boundary by pointer and grow at the end: each records its size
VERSIONED = ("covet_plugin_descriptor", "covet_host_api", "covet_request_view")


def _c_code() -> str:
    return re.sub(r"/\*.*?\*/", "", HEADER.read_text(), flags=re.S)


def _member_name(decl: str) -> str:
    decl = decl.strip()
    fnptr = re.search(r"\(\s*\*\s*(\w+)\s*\)", decl)
    if fnptr:
        return fnptr.group(1)
    return re.findall(r"\w+", decl)[-1]


def _c_struct(name: str) -> list[str]:
    match = re.search(r"typedef\s+struct\s+%s\s*\{(.*?)\}\s*%s\s*;" % (name, name), _c_code(), flags=re.S)
    assert match, f"covet_plugin.h has no 'typedef struct {name} {{...}} {name};'"
    body = re.sub(r"^\s*#.*$", "", match.group(1), flags=re.M)
    return [_member_name(d) for d in body.split(";") if d.strip()]


def _pxd_struct(name: str) -> list[str]:
    lines = PXD.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"ctypedef struct {name}:")
    indent = len(lines[start + 1]) - len(lines[start + 1].lstrip())
    fields = []
    decl = ""
    for line in lines[start + 1:]:
        if line.strip() and len(line) - len(line.lstrip()) < indent:
            break
        decl += line.strip() + " "
        if decl.count("(") == decl.count(")") and decl.strip():
            fields.append(_member_name(decl))
            decl = ""
    return fields


@pytest.mark.parametrize("struct", VERSIONED)
def test_versioned_struct_records_struct_size_near_its_start(struct):
    assert "struct_size" in _c_struct(struct)[:2], (
        f"{struct} must have a struct_size field among its first two, so the other side can tell "
        "which fields exist (the struct grows at the end only)"
    )


def test_header_exported_names_start_with_covet():
    code = _c_code()
    names = set(re.findall(r"^\s*#\s*define\s+(\w+)", code, flags=re.M))
    names |= set(re.findall(r"\bstruct\s+(\w+)", code))                       # struct tags
    names |= set(re.findall(r"\}\s*(\w+)\s*;", code))                          # typedef'd structs
    names |= set(re.findall(r"typedef[^;{}]*?\(\s*\*\s*(\w+)\s*\)", code))     # function pointer types
    names |= set(re.findall(r"typedef\s+struct\s+\w+\s*\*\s*(\w+)\s*;", code))  # handles
    assert len(names) > 20
    stray = sorted(n for n in names if not n.lower().startswith("covet_"))
    assert stray == [], f"covet_plugin.h exports names without the covet_/COVET_ prefix: {stray}"


def test_pxd_mirrors_every_header_struct_field_in_order():
    for struct in ("covet_host_str", "covet_plugin_str", "covet_header", *VERSIONED):
        assert _pxd_struct(struct) == _c_struct(struct), f"covet_plugin.pxd's {struct} differs from the header's"


def test_pxd_declares_every_integer_constant():
    constants = re.findall(r"^#define\s+(COVET_\w+)\s+\(?-?\d", _c_code(), flags=re.M)
    pxd = PXD.read_text()
    missing = [c for c in constants if not re.search(rf"^\s+{c}\s*$", pxd, flags=re.M)]
    assert missing == [], f"covet_plugin.pxd does not declare {missing}"


@pytest.mark.parametrize("compiler", [
    ["gcc", "-x", "c", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror"],
    ["g++", "-x", "c++", "-Wall", "-Wextra", "-Werror"],
], ids=["c99", "c++"])
def test_header_compiles(compiler, tmp_path):
    if shutil.which(compiler[0]) is None:
        pytest.skip(f"{compiler[0]} is not installed")
    proc = subprocess.run([*compiler, "-fsyntax-only", str(HEADER)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_header_macros_compile_in_a_plugin(tmp_path):
    # The helper macros are only compiled where used: use each one, as a plugin would.
    src = tmp_path / "uses_macros.c"
    src.write_text(
        '#include "covet_plugin.h"\n'
        "static const covet_host_api *host;\n"
        "static int on_request(void *instance, covet_request_host_ptr req, const covet_request_view *view) {\n"
        "  (void)instance; (void)view;\n"
        "  if (COVET_HOST_HAS(host, log)) return host->add_header(req, COVET_STR(\"a\"), COVET_CSTR(\"b\"));\n"
        "  return COVET_ABI_VERSION_MAJOR(host->abi_version) == COVET_ABI_MAJOR ? COVET_OK : COVET_ERROR;\n"
        "}\n"
        "static const covet_plugin_descriptor d = {COVET_DESCRIPTOR_HEADER(0), .name = \"m\", .version = \"1\",\n"
        "  .on_request = on_request};\n"
        "COVET_EXPORT const covet_plugin_descriptor *COVET_PLUGIN_ENTRY(void) { return &d; }\n"
    )
    proc = subprocess.run(["gcc", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", f"-I{HEADER.parent}",
                           "-fsyntax-only", str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
