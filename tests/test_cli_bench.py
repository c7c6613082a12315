"""`covet-pipe bench`: the pyperf layer suite as a process, in its shortest mode, and its progress bar."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

from covet_pipe.cli.bench import Progress

EXE = Path(sys.executable).parent / "covet-pipe"


def _bench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXE), "bench", *args], capture_output=True, text=True, timeout=600, cwd=cwd,
                          stdin=subprocess.DEVNULL)


def test_smoke_run_prints_the_table_and_plain_progress_lines(tmp_path: Path) -> None:
    out = tmp_path / "layers.json"
    proc = _bench("--smoke", "--only", "covet-sync", "--layers", "0,1", "-o", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # stderr is not a terminal here: one line per benchmark, in the order the suite runs them
    progress = [line for line in proc.stderr.splitlines() if line.startswith("bench ")]
    assert [re.match(r"bench (\d)/3 \(\d+ s\): (.+?):", line).groups() for line in progress] == [  # type: ignore[union-attr]
        ("1", "bare-app"), ("2", "covet-sync N=0"), ("3", "covet-sync N=1")]
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| covet-pipe, sync hooks |"))
    n0, n1 = (float(cell) for cell in row.split("|")[2:4])
    assert 0 < n0 < n1          # one layer costs something
    assert out.is_file() and f"pyperf results: {out}" in proc.stdout


def test_bad_input_exits_2_and_says_what_to_give(tmp_path: Path) -> None:
    unknown = _bench("--smoke", "--only", "nginx", cwd=tmp_path)
    assert unknown.returncode == 2 and "--only nginx: expected a comma-separated list of covet-sync" in unknown.stderr
    nowhere = _bench("--smoke", "--benchmarks", str(tmp_path), cwd=tmp_path)
    assert nowhere.returncode == 2 and "give --benchmarks /path/to/covet-pipe/benchmarks" in nowhere.stderr


def test_progress_on_a_terminal_redraws_one_bar() -> None:
    out = io.StringIO()
    bar = Progress(4, out, tty=True, width=8)
    for name in ("a", "b", "c", "d"):
        bar.step(name)
    frames = out.getvalue().split("\r")[1:]
    assert [f.split("]")[0] for f in frames] == ["[##......", "[####....", "[######..", "[########"]
    assert [f.split("] ")[1].split()[0] for f in frames] == ["1/4", "2/4", "3/4", "4/4"]
    assert out.getvalue().endswith("\n") and out.getvalue().count("\n") == 1
