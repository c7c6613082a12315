"""A look at an ELF file's header before it is handed to dlopen: is it a library for this machine?"""

from __future__ import annotations

import platform
import struct

__all__ = ["check_elf"]

#: e_machine for the machines we may run on
_MACHINES = {"x86_64": 62, "amd64": 62, "aarch64": 183, "arm64": 183, "i686": 3, "i386": 3,
             "armv7l": 40, "ppc64le": 21, "s390x": 22, "riscv64": 243}
_MACHINE_NAMES = {62: "x86-64", 183: "AArch64", 3: "x86 (32-bit)", 40: "ARM (32-bit)", 21: "PowerPC64",
                  22: "s390x", 243: "RISC-V"}
ET_DYN = 3


def check_elf(data: bytes, size: int) -> str | None:
    """Why *data* (the file's first bytes; the file has *size* bytes) is not a loadable library, or None."""
    if data[:4] != b"\x7fELF":
        return "it is not an ELF file (a shared library built for Linux starts with \\x7fELF)"
    if len(data) < 64:
        return f"it is truncated ({size} bytes, less than an ELF header); rebuild or copy it again"
    ei_class, ei_data = data[4], data[5]
    if ei_class != 2:
        return "it is a 32-bit ELF file; this covet-pipe is 64-bit"
    if ei_data != 1:
        return "it is a big-endian ELF file; this machine is little-endian"
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    if e_type != ET_DYN:
        kinds = {1: "a relocatable object (.o)", 2: "an executable", 4: "a core dump"}
        return f"it is {kinds.get(e_type, f'ELF type {e_type}')}, not a shared library; build it with -shared -fPIC"
    want = _MACHINES.get(platform.machine().lower())
    if want is not None and e_machine != want:
        return (f"it is built for {_MACHINE_NAMES.get(e_machine, f'machine {e_machine}')}, but this machine "
                f"is {platform.machine()}; rebuild it here")
    e_phoff, e_shoff = struct.unpack_from("<QQ", data, 32)
    e_phentsize, e_phnum, e_shentsize, e_shnum = struct.unpack_from("<HHHH", data, 54)
    if e_phoff + e_phentsize * e_phnum > size or e_shoff + e_shentsize * e_shnum > size:
        return f"it is truncated ({size} bytes, but its headers point past the end); rebuild or copy it again"
    return None
