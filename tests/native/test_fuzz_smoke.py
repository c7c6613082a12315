"""The properties `make fuzz-native` fuzzes, over a few hundred seeded random inputs (no atheris)."""

from __future__ import annotations

import importlib.util
import random
import re
from pathlib import Path
from types import ModuleType

import pytest

from covet_pipe.errors import PluginLoadError

FUZZ = Path(__file__).resolve().parents[2] / "fuzz" / "fuzz_native_loader.py"


@pytest.fixture(scope="module")
def fz() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_native_loader", FUZZ)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_check_elf_on_random_headers_returns_text_or_none(fz: ModuleType) -> None:
    src = fz.RandomSource(random.Random(0))
    reasons = set()
    for _ in range(600):
        data, size = fz.elf_input(src)
        fz.check_elf_property(data, size)
        reasons.add(re.split(r" \(|;|,", fz.check_elf(data, size) or "loadable")[0])
    # the inputs reach every verdict, not just the first check
    assert {"loadable", "it is not an ELF file", "it is truncated", "it is a 32-bit ELF file"} <= reasons


def test_describe_on_random_descriptors_accepts_valid_or_raises_load_error(fz: ModuleType) -> None:
    src = fz.RandomSource(random.Random(0))
    accepted = refused = 0
    for _ in range(600):
        desc, keep = fz.descriptor(src)
        fz.describe_property(desc, keep)
        try:
            fz.loader._describe(desc, keep, "fuzz.so", "c")
            accepted += 1
        except PluginLoadError:
            refused += 1
    assert accepted > 0 and refused > 0


def test_properties_fail_on_a_loader_that_breaks_them(fz: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    desc, keep = fz.descriptor(fz.RandomSource(random.Random(1)))

    def crashes(*args: object) -> None:
        raise ValueError("not a PluginLoadError")

    monkeypatch.setattr(fz.loader, "_describe", crashes)
    with pytest.raises(ValueError):
        fz.describe_property(desc, keep)
    monkeypatch.setattr(fz, "check_elf", lambda data, size: "")
    with pytest.raises(AssertionError):
        fz.check_elf_property(b"\x7fELF", 4)
