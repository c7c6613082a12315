"""The code blocks of README.md and docs/*.md run as written, so the docs cannot drift from the code.

Every fenced block in those files names its language (```text for diagrams and output), and every
``python``, ``sh``, ``shell``, ``bash`` or ``console`` block has a marker on the line before its fence that
says how it runs; a new block without one fails ``test_every_block_declares_how_it_runs``:

``<!-- run: file PATH -->``
    write the block to PATH (any language; folders are created).
``<!-- run: edit PATH -->``
    the block's top-level assignments replace the ones of the same names in the Python file PATH.
``<!-- run: python -->``
    run the block with ``python -c``; it must exit 0.
``<!-- run: pytest PATH -->``
    write the block to PATH and run pytest on it; its tests must pass.
``<!-- run: shell -->``
    a ``sh`` block runs as one ``sh -e`` script. A ``console`` block runs command by command (the
    ``$ `` lines): each must exit 0, and its output must hold the lines shown below it, in that order
    (other lines may come between; ``...`` marks where some are left out).
``<!-- run: serve -->``
    a console block with a server: its first ``uvicorn APP ...`` or ``covet-pipe serve APP ...`` command
    runs in the background, the commands after it run against it, then it is stopped with SIGTERM and
    must end cleanly (exit 0, or uvicorn's re-raised
    SIGTERM) with no traceback in its log. When it is uvicorn, the block runs a second time with
    ``covet-pipe serve`` and the same arguments in its place, from the files as they were before the
    first run (so a block may edit them).
``<!-- run: serve APP -->``
    the same, for a block without a server command: the runner serves APP with
    ``uvicorn APP --host 127.0.0.1 --port 8000``, then with ``covet-pipe serve`` and the same arguments.
``<!-- no-run: REASON -->``
    not run, and why.

Each document runs in a scratch folder of its own, block after block, so a later block finds the files
an earlier one wrote; the venv's ``bin`` comes first on PATH. In commands, ``127.0.0.1:8000`` and
``--port 8000`` stand for a free port the runner picks, and ``/path/to/covet-pipe`` for this checkout.
``127.0.0.1:6379`` (in any block that runs, files included) stands for a real redis-server that the
runner starts on a free port the first time a document mentions it, and stops when the document ends.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests._process import free_port, start_until_ready, stop
from tests._redis import RealRedis, need_redis

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = {"python", "py", "sh", "shell", "bash", "console"}
MODES = {"file", "edit", "python", "pytest", "shell", "serve"}
#: seconds for one command of a block: generous for a loaded machine, never a speed check
STEP = 120

#: Blocks expected to fail until the named change lands, by (document, the block's first line). A block
#: listed here that passes fails the test (strict xfail): then take it off the list.
PENDING: dict[tuple[str, str], str] = {}

_FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
_MARKER = re.compile(r"^<!--\s*(run|no-run):\s*(.*?)\s*-->$")
_SERVER = re.compile(r"^(uvicorn|covet-pipe serve)\s+(\S+)(.*)$")


@dataclass
class Block:
    doc: Path
    line: int              #: of the opening fence, 1-based
    lang: str
    text: str
    marker: str | None     #: the marker line's "run: ..." / "no-run: ..." text, None without one

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"

    @property
    def key(self) -> tuple[str, str]:
        return str(self.doc.relative_to(ROOT)), self.text.splitlines()[0] if self.text else ""


def blocks(doc: Path) -> list[Block]:
    """The fenced blocks of *doc*, in order, each with the marker on the line before its fence."""
    lines = doc.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start = m.group(1), m.group(2), i
        i += 1
        body = []
        while i < len(lines) and not (lines[i].strip() == "```"):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        i += 1
        before = lines[start - 1].strip() if start else ""
        marker = None
        if mm := _MARKER.match(before):
            marker = f"{mm.group(1)}: {mm.group(2)}"
        found.append(Block(doc, start + 1, lang, "\n".join(body) + "\n", marker))
    return found


def _marker_problem(b: Block) -> str | None:
    if not b.lang:
        return "a fence without a language: name it (```text for diagrams and output)"
    if b.marker is None:
        return "no marker: put <!-- run: ... --> or <!-- no-run: REASON --> on the line before the fence" \
            if b.lang in RUNNABLE else None
    kind, _, rest = b.marker.partition(": ")
    if kind == "no-run":
        return None if rest else "no-run without a reason"
    mode, *args = rest.split()
    if mode not in MODES:
        return f"unknown run mode {mode!r}; one of {sorted(MODES)}"
    if mode in ("file", "edit", "pytest") and len(args) != 1:
        return f"run: {mode} takes one path"
    if mode in ("python", "shell") and args:
        return f"run: {mode} takes no arguments"
    if mode in ("shell", "serve") and b.lang not in ("sh", "console"):
        return f"run: {mode} is for sh or console blocks"
    return None


def test_every_block_declares_how_it_runs() -> None:
    problems = [f"{b.where}: {p}" for doc in DOCS for b in blocks(doc) if (p := _marker_problem(b))]
    assert not problems, "\n".join(problems)


def test_the_runner_finds_the_blocks_it_should() -> None:
    # a parser that found nothing would pass every other test here
    readme = blocks(ROOT / "README.md")
    assert any(b.lang == "python" and b.marker and b.marker.startswith("run:") for b in readme)
    assert sum(1 for doc in DOCS for b in blocks(doc) if b.marker and b.marker.startswith("run:")) >= 30


class BlockFailed(AssertionError):
    pass


class Runner:
    """Runs one document's blocks in order in *folder*."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        self.env.pop("PYTHONPATH", None)
        self.port = free_port()
        self.redis: RealRedis | None = None

    def close(self) -> None:
        if self.redis is not None:
            self.redis.stop()

    def _subst(self, text: str) -> str:
        if "127.0.0.1:6379" in text:
            if self.redis is None:
                need_redis()
                self.redis = RealRedis()
            text = text.replace("127.0.0.1:6379", f"127.0.0.1:{self.redis.port}")
        text = text.replace("127.0.0.1:8000", f"127.0.0.1:{self.port}")
        text = text.replace("--port 8000", f"--port {self.port}")
        return text.replace("/path/to/covet-pipe", str(ROOT))

    def _sh(self, b: Block, command: str) -> str:
        proc = subprocess.run(["sh", "-ec", self._subst(command)], cwd=self.folder, env=self.env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=STEP,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise BlockFailed(f"{b.where}: `{command}` exited {proc.returncode}:\n{proc.stdout}")
        return proc.stdout

    def run(self, b: Block) -> None:
        mode, *args = b.marker.partition(": ")[2].split()  # type: ignore[union-attr]
        getattr(self, f"_run_{mode}")(b, *args)

    def _run_file(self, b: Block, path: str) -> None:
        target = self.folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self._subst(b.text) if "127.0.0.1:6379" in b.text else b.text)

    def _run_edit(self, b: Block, path: str) -> None:
        target = self.folder / path
        source = target.read_text().splitlines(keepends=True)
        new = ast.parse(b.text)
        for stmt in reversed(new.body):
            names = {t.id for t in getattr(stmt, "targets", []) if isinstance(t, ast.Name)}
            old = next((s for s in ast.parse("".join(source)).body
                        if {t.id for t in getattr(s, "targets", []) if isinstance(t, ast.Name)} == names), None)
            if not names or old is None:
                raise BlockFailed(f"{b.where}: run: edit {path}: {path} has no assignment to {names or 'it'}")
            text = ast.get_source_segment(b.text, stmt)
            source[old.lineno - 1:old.end_lineno] = [text + "\n"]  # type: ignore[operator]
        target.write_text("".join(source))

    def _run_python(self, b: Block) -> None:
        self._sh(b, f"python -c {shlex.quote(b.text)}")

    def _run_pytest(self, b: Block, path: str) -> None:
        self._run_file(b, path)
        self._sh(b, f"python -m pytest -q -p no:cacheprovider {shlex.quote(path)}")

    def _commands(self, b: Block) -> list[tuple[str, list[str]]]:
        """(command, expected output lines) pairs: a console block's $ lines, or a sh block as one script."""
        if b.lang == "sh":
            return [(b.text, [])]
        steps: list[tuple[str, list[str]]] = []
        for line in b.text.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif steps and line.strip() and line.strip() != "...":
                steps[-1][1].append(line.rstrip())
        return steps

    def _check(self, b: Block, steps: list[tuple[str, list[str]]]) -> None:
        for command, expected in steps:
            out = [line.rstrip() for line in self._sh(b, command).replace("\r", "").splitlines()]
            at = 0
            for want in expected:
                try:
                    at = out.index(want, at) + 1
                except ValueError:
                    raise BlockFailed(f"{b.where}: `{command}` did not print {want!r} (after the lines "
                                      f"before it); it printed:\n" + "\n".join(out)) from None

    def _run_shell(self, b: Block) -> None:
        self._check(b, self._commands(b))

    def _run_serve(self, b: Block, app: str | None = None) -> None:
        steps = self._commands(b)
        at = next((i for i, (cmd, _) in enumerate(steps) if _SERVER.match(cmd.split("#")[0].strip())), None)
        if app is not None:
            if at is not None:
                raise BlockFailed(f"{b.where}: run: serve {app} on a block that starts its own server")
            server, before, after = f"uvicorn {app} --host 127.0.0.1 --port 8000", [], steps
        elif at is None:
            raise BlockFailed(f"{b.where}: run: serve without APP needs a `$ uvicorn ...` or "
                              "`$ covet-pipe serve ...` command in the block")
        else:
            server, before, after = steps[at][0].split("#")[0].strip(), steps[:at], steps[at + 1:]
        self._check(b, before)
        kind, spec, rest = _SERVER.match(server).groups()  # type: ignore[union-attr]
        servers = [server] + ([f"covet-pipe serve {spec}{rest}"] if kind == "uvicorn" else [])
        # each server starts from the same files: a block may edit them (a hot reload, say)
        snapshot = self.folder.parent / f"before-{b.line}"
        shutil.copytree(self.folder, snapshot, symlinks=True)
        for i, cmd in enumerate(servers):
            if i:
                shutil.rmtree(self.folder)
                shutil.copytree(snapshot, self.folder, symlinks=True)
            self._serve_once(b, cmd, after)

    def _serve_once(self, b: Block, server: str, steps: list[tuple[str, list[str]]]) -> None:
        log = self.folder.parent / f"server-{b.line}-{server.split()[0]}.log"
        proc = start_until_ready(["sh", "-c", "exec " + self._subst(server)], self.port, self.folder, log,
                                 env=self.env)
        try:
            self._check(b, steps)
        except BlockFailed as exc:
            raise BlockFailed(f"{exc}\nunder `{server}`, whose log says:\n{log.read_text()}") from None
        finally:
            code = stop(proc)
        output = log.read_text()
        # uvicorn re-raises the SIGTERM it handled once it has shut down; covet-pipe serve exits 0
        if code not in (0, -signal.SIGTERM) or "Traceback" in output:
            raise BlockFailed(f"{b.where}: `{server}` exited {code} after the block ran:\n{output}")


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_doc_blocks_run_as_written(doc: Path, tmp_path: Path) -> None:
    folder = tmp_path / "work"
    folder.mkdir()
    runner = Runner(folder)
    try:
        ran = _run_blocks(doc, runner)
    finally:
        runner.close()
    assert ran or not any(b.marker for b in blocks(doc) if b.marker and b.marker.startswith("run:"))


def _run_blocks(doc: Path, runner: Runner) -> int:
    ran = 0
    for b in blocks(doc):
        if not (b.marker and b.marker.startswith("run:")):
            continue
        pending = PENDING.get(b.key)
        try:
            runner.run(b)
        except BlockFailed as exc:
            if pending:
                pytest.xfail(f"{b.where}: pending ({pending}): {exc}")
            raise
        ran += 1
        if pending:
            raise AssertionError(f"{b.where} is listed in PENDING ({pending}) but runs: take it off the list")
    return ran


def test_plugins_md_lists_every_manifest_field() -> None:
    from covet_pipe import manifest
    section = (ROOT / "docs" / "plugins.md").read_text().split("## 7.", 1)[1].split("\n## ", 1)[0]
    for field in manifest.FIELDS:
        shown = f"[{field}]" if manifest.FIELDS[field] is dict else field
        assert f"`{shown}`" in section, f"docs/plugins.md, section 7, does not list the manifest field {shown}"
    for field in manifest.PERMISSION_FIELDS:
        assert f"`{field}`" in section, f"docs/plugins.md, section 7, does not list permissions.{field}"
