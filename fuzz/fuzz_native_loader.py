"""Fuzz the native loader's validation: the ELF header check and the descriptor check.

    python fuzz/fuzz_native_loader.py -max_total_time=60        # atheris (libFuzzer options)
    python fuzz/fuzz_native_loader.py --random 60               # no atheris: random inputs for 60 s

Two properties, picked by the first input byte:
  (a) ``check_elf(header, size)`` returns a str or None for any bytes, never raises;
  (b) ``loader._describe`` on a descriptor built in memory from fuzzed fields (ABI version,
      struct_size, requires_minor, flags, name and version bytes, dependency and protocol
      lists) returns a NativePlugin that satisfies the host's rules, or raises PluginLoadError.
Fuzzed bytes are never dlopened: that would run whatever constructors they hold.
tests/native/test_fuzz_smoke.py runs both properties over a few hundred seeded inputs.
"""

from __future__ import annotations

import random
import sys
import time
from typing import Any, Protocol

from packaging.version import Version

from covet_pipe._core import ABI_MAJOR, ABI_MINOR
from covet_pipe.errors import PluginLoadError
from covet_pipe.native import NativePlugin
from covet_pipe.native import loader
from covet_pipe.native._elf import check_elf
from covet_pipe.native._ffi import DESCRIPTOR_SIZE_1_0, ffi

HOST_ABI = (ABI_MAJOR << 16) | ABI_MINOR


class Source(Protocol):
    """Where the fuzzed values come from (atheris' data provider, or a seeded Random)."""

    def uint(self, bits: int) -> int: ...
    def raw(self, n: int) -> bytes: ...
    def pick(self, n: int) -> int: ...


class RandomSource:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def uint(self, bits: int) -> int:
        return self.rng.getrandbits(bits)

    def raw(self, n: int) -> bytes:
        return self.rng.randbytes(self.rng.randrange(n + 1))

    def pick(self, n: int) -> int:
        return self.rng.randrange(n)


class FuzzSource:
    def __init__(self, data: bytes) -> None:
        import atheris
        self.fdp = atheris.FuzzedDataProvider(data)

    def uint(self, bits: int) -> int:
        return int(self.fdp.ConsumeIntInRange(0, (1 << bits) - 1))

    def raw(self, n: int) -> bytes:
        return bytes(self.fdp.ConsumeBytes(self.fdp.ConsumeIntInRange(0, n)))

    def pick(self, n: int) -> int:
        return int(self.fdp.ConsumeIntInRange(0, n - 1))


# ==== (a) the ELF header ===================================================================

def elf_input(src: Source) -> tuple[bytes, int]:
    """A file's first bytes and its size: random, or a header that gets past the first checks."""
    if src.pick(3) == 0:
        data = src.raw(80)
    else:
        head = bytearray(b"\x7fELF" + bytes([2 if src.pick(4) else 1, 1 if src.pick(4) else 2]))
        head += src.raw(10).ljust(10, b"\0")[:10]
        head += (3 if src.pick(3) else src.uint(16)).to_bytes(2, "little")      # e_type
        head += (62 if src.pick(3) else src.uint(16)).to_bytes(2, "little")     # e_machine
        head += src.raw(44).ljust(44, b"\0")[:44]
        data = bytes(head[: 64 if src.pick(5) else src.pick(64)])
    sizes = [len(data), len(data) + src.uint(20), src.uint(64), src.pick(len(data) + 1)]
    return data, sizes[src.pick(len(sizes))]


def check_elf_property(data: bytes, size: int) -> None:
    why = check_elf(data, size)
    assert why is None or (isinstance(why, str) and why), repr(why)
    if why is None:
        assert data[:4] == b"\x7fELF" and len(data) >= 64


# ==== (b) the descriptor ===================================================================

def _either(src: Source, good: list[Any], bad: list[Any]) -> Any:
    # Half the time a value the host accepts, so inputs also get past the first check.
    pool = good if src.pick(2) == 0 else bad
    return pool[src.pick(len(pool))]


def _string(src: Source, keep: list[Any], good: list[bytes]) -> Any:
    value = _either(src, good, [None, b"", src.raw(40), b"a" * (200 + src.pick(120)), b"ok\0hidden",
                                b"caf\xc3\xa9", b"\xff\xfe", b"two words"])
    if value is None:
        return ffi.NULL
    buf = ffi.new("char[]", value)     # NUL-terminated, as the ABI requires of static strings
    keep.append(buf)
    return buf


NAMES = [b"good_name", b"a.b-c_d", b"x", b"Z9"]
VERSIONS = [b"1.2.0", b"0.0.1rc1", b"2!1.0.post3"]
SPECS = [b"py_dep>=1,<2", b"other", b"name==1.0"]


def _list(src: Source, keep: list[Any]) -> Any:
    kind = src.pick(4)
    if kind == 0:
        return ffi.NULL
    if kind == 3:   # no NULL within the first 65 entries: the loader must stop and say so
        items = [_nonnull(src, keep) for _ in range(65 + src.pick(4))]
    else:
        items = [_string(src, keep, SPECS) for _ in range(src.pick(6))] + [ffi.NULL]
    arr = ffi.new("const char *[]", items)
    keep.append(arr)
    return arr


def _nonnull(src: Source, keep: list[Any]) -> Any:
    s = _string(src, keep, SPECS)
    if s == ffi.NULL:
        s = ffi.new("char[]", b"x")
        keep.append(s)
    return s


def descriptor(src: Source) -> tuple[Any, list[Any]]:
    """A covet_plugin_descriptor in memory (hooks NULL: never called) and what keeps it alive."""
    keep: list[Any] = []
    d = ffi.new("covet_plugin_descriptor *")
    d.abi_version = _either(src, [HOST_ABI, (ABI_MAJOR << 16) | 7],
                            [2 << 16, 0, 0xFFFFFFFF, (ABI_MAJOR << 16) | 0xFFFF, src.uint(32)])
    d.struct_size = _either(src, [DESCRIPTOR_SIZE_1_0, DESCRIPTOR_SIZE_1_0 + 8, 0xFFFFFFFF],
                            [0, 8, DESCRIPTOR_SIZE_1_0 - 1, src.uint(32)])
    d.requires_minor = _either(src, [0, ABI_MINOR], [ABI_MINOR + 1, 3, 0xFFFF, src.uint(32)])
    d.flags = src.uint(32)
    d.priority = src.uint(32) - (1 << 31)
    d.reserved = src.uint(8)
    d.name = _string(src, keep, NAMES)
    d.version = _string(src, keep, VERSIONS)
    d.dependencies = _list(src, keep)
    d.protocols = _list(src, keep)
    return d, keep


def describe_property(desc: Any, keep: list[Any]) -> None:
    try:
        plugin = loader._describe(desc, keep, "fuzz.so", "c")
    except PluginLoadError as exc:
        assert str(exc).startswith("fuzz.so") and exc.path == "fuzz.so", str(exc)
        return
    assert isinstance(plugin, NativePlugin)
    assert desc.abi_version >> 16 == ABI_MAJOR
    assert desc.struct_size >= DESCRIPTOR_SIZE_1_0
    assert desc.requires_minor <= ABI_MINOR
    assert loader._NAME.match(plugin.name)
    Version(plugin.version)
    assert all(isinstance(d, str) for d in plugin.dependencies)
    assert plugin.protocols


# ==== drivers ==============================================================================

def one(src: Source, which: int) -> None:
    if which == 0:
        check_elf_property(*elf_input(src))
    else:
        describe_property(*descriptor(src))


def test_one_input(data: bytes) -> None:
    if not data:
        return
    one(FuzzSource(data[1:]), data[0] & 1)


def random_loop(seconds: float, seed: int = 0) -> int:
    rng = random.Random(seed)
    src = RandomSource(rng)
    deadline = time.monotonic() + seconds
    runs = 0
    while time.monotonic() < deadline:
        one(src, runs & 1)
        runs += 1
    return runs


def main(argv: list[str]) -> None:
    if len(argv) > 1 and argv[1] == "--random":
        seconds = float(argv[2]) if len(argv) > 2 else 60.0
        print(f"random inputs: {random_loop(seconds)} runs in {seconds:g} s, no failure")
        return
    try:
        import atheris
    except ImportError:
        sys.exit("atheris is not installed (pip install atheris, or install the dev extras); "
                 "run with --random SECONDS for a plain random-input loop instead")
    atheris.instrument_func(check_elf)
    atheris.instrument_func(loader._describe)
    atheris.instrument_func(loader._text)
    atheris.instrument_func(loader._text_list)
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
