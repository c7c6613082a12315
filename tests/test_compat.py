"""The ranges a plugin package declares against the running covet-pipe (covet_pipe/compat.py), on real metadata.

Each case is an installed-looking distribution in a temporary site folder (``NAME.dist-info`` with METADATA
and entry_points.txt, the package beside it with its manifest), read through importlib.metadata as
discovery reads it. (Whole packages pip-installed and served: tests/test_plugin_packages.py.)
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from covet_pipe.compat import check_distribution, running_abi, running_version


def _dist(site: Path, requires: list[str], manifest: str | None) -> importlib.metadata.Distribution:
    info = site / "covet_pipe_demo-1.0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: covet-pipe-demo\nVersion: 1.0.0\n"
                                   + "".join(f"Requires-Dist: {r}\n" for r in requires))
    (info / "entry_points.txt").write_text("[covet_pipe.plugins]\ndemo = covet_pipe_demo:Demo\n")
    (site / "covet_pipe_demo").mkdir()
    (site / "covet_pipe_demo" / "__init__.py").write_text("raise SystemExit('never imported')\n")
    if manifest is not None:
        (site / "covet_pipe_demo" / "covet-plugin.toml").write_text(manifest)
    return importlib.metadata.PathDistribution(info)


def test_a_package_within_both_ranges_fits(tmp_path: Path) -> None:
    major = running_abi().split(".")[0]
    fit = _dist(tmp_path, ["covet-pipe>=0.1", "httpx>=0.27"], f'abi = ">={major}.0,<{int(major) + 1}"\n')
    found = check_distribution(fit)
    assert found.ok and found.problems == []
    assert (found.requires, found.abi) == ("covet-pipe>=0.1", f">={major}.0,<{int(major) + 1}")


def test_a_package_that_declares_nothing_fits_and_says_so(tmp_path: Path) -> None:
    found = check_distribution(_dist(tmp_path, [], None))
    assert found.ok and (found.requires, found.abi) == ("-", "-")


@pytest.mark.parametrize("requires, manifest, expected", [
    (["covet-pipe>=99"], None, f"covet-pipe-demo 1.0.0 requires covet-pipe>=99, but this is covet-pipe "
                               f"{running_version()}; install a release of covet-pipe-demo made for"),
    (["covet-pipe"], 'abi = ">=9,<10"\n', "covet-pipe-demo 1.0.0 is built for the native ABI >=9,<10, but this "
                                          f"covet-pipe has ABI {running_abi()}; install a build"),
    (["covet-pipe"], 'abi = "one"\n', "abi: expected the native ABI versions the plugin is built for, such as "
                                      "'>=1.1,<2', got 'one'"),
    (["covet-pipe"], 'abi = 1\n', "abi: expected `str`, got `int`"),
])
def test_a_package_out_of_range_is_named_with_what_to_do(tmp_path: Path, requires: list[str], manifest: str | None,
                                                         expected: str) -> None:
    found = check_distribution(_dist(tmp_path, requires, manifest))
    assert not found.ok
    assert expected in found.problems[0], found.problems


def test_a_requirement_under_a_marker_that_does_not_apply_is_not_held_against_it(tmp_path: Path) -> None:
    found = check_distribution(_dist(tmp_path, ['covet-pipe>=99; extra == "dev"', "covet-pipe>=0.1"], None))
    assert found.ok and found.requires == "covet-pipe>=0.1"
