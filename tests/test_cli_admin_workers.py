"""`covet-pipe serve --workers 2 --admin`: one admin port, and a reload through it reaches every worker.

Each worker has its own manager; the supervisor forwards each admin call to every worker's control
socket. The plugin stamps its version and the worker's pid: before the reload both pids serve 1.0.0,
after it every response, from either pid, is 2.0.0. `covet-pipe list` shows each worker's row.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests._process import stop
from tests.test_cli_admin import Server, make_folder, stamp, write_plugin

#: new connections to make until both workers have answered (SO_REUSEPORT spreads them by hash)
ATTEMPTS = 400


def _pids_by_version(port: int, want_pids: int) -> dict[str, set[str]]:
    """version -> pids seen, over new connections until *want_pids* pids have answered (bounded).

    It makes an odd number of requests: two workers cannot then have served alike, so their
    ``calls`` counters differ and the admin port answers a GET per worker.
    """
    seen: dict[str, set[str]] = {}
    made = 0
    for _ in range(ATTEMPTS):
        version, _, pid = stamp(port).partition(":")
        made += 1
        seen.setdefault(version, set()).add(pid)
        if len(set().union(*seen.values())) >= want_pids and made % 2:
            break
    return seen


def test_reload_through_the_supervisor_reaches_every_worker(tmp_path: Path) -> None:
    server = Server(make_folder(tmp_path), workers=2)
    try:
        before = _pids_by_version(server.port, 2)
        assert list(before) == ["1.0.0"] and len(before["1.0.0"]) == 2, before

        listing = server.cli("list")
        assert listing.returncode == 0, listing.stderr
        header, *rows = listing.stdout.splitlines()
        assert header.split()[:3] == ["WORKER", "NAME", "VERSION"]
        worker_pids = {r.split()[0].split("/")[1] for r in rows}
        assert worker_pids == before["1.0.0"], (listing.stdout, before)
        assert all(r.split()[1:3] == ["stamp", "1.0.0"] for r in rows)

        write_plugin(server.folder, "2.0.0")
        reload = server.cli("reload", "stamp", "--json")
        assert reload.returncode == 0, (reload.stdout, reload.stderr)
        # every worker reloaded alike: one merged document
        assert json.loads(reload.stdout) == {"reloaded": "stamp", "version": "2.0.0"}

        after = _pids_by_version(server.port, 2)
        assert list(after) == ["2.0.0"] and after["2.0.0"] == before["1.0.0"], after

        health = server.cli("health", "--json")
        assert health.returncode == 0, health.stderr
        doc = json.loads(health.stdout)
        # the workers' counters differ unless they served exactly alike: per worker, or one document
        documents = [w["document"] for w in doc["workers"]] if "workers" in doc else [doc]
        if "workers" in doc:
            assert sorted(str(w["pid"]) for w in doc["workers"]) == sorted(before["1.0.0"])
        assert all(d["status"] == "ok" and d["plugins"]["stamp"]["version"] == "2.0.0" for d in documents)

        wrong = tmp_path / "wrong"
        wrong.write_text("not-the-token-at-all-0123456789\n")
        refused = server.cli("reload", "stamp", token_file=str(wrong))
        assert refused.returncode == 4 and "refused the token (403)" in refused.stderr
    finally:
        code = stop(server.proc)
    log = server.log.read_text()
    assert code == 0 and "Traceback" not in log, log
    run_dirs = [line for line in log.splitlines() if "covet-pipe-admin-" in line]
    for line in run_dirs:      # the control sockets' folder is gone after the stop
        path = line[line.index("unix:") + 5:].split()[0]
        assert not Path(path).parent.exists(), line


def _rows(server: Server) -> list[list[str]]:
    listing = server.cli("list")
    # 1 while a worker is down: its row says it did not answer
    assert listing.returncode in (0, 1) and listing.stdout, listing.stderr
    header, *rows = listing.stdout.splitlines()
    return [r.split() for r in rows] if header.startswith("WORKER") else [["-/-", *r.split()] for r in rows]


def test_a_restarted_worker_is_behind_the_admin_port_again(tmp_path: Path) -> None:
    import os
    import signal
    import stat
    import time

    server = Server(make_folder(tmp_path), workers=2)
    try:
        pids = _pids_by_version(server.port, 2)["1.0.0"]
        # the control sockets: a run directory only this user may enter, sockets only it may open
        line = next(x for x in server.log.read_text().splitlines() if "admin API on unix:" in x)
        sock_path = Path(line.split("unix:", 1)[1].split()[0])
        assert stat.S_IMODE(sock_path.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(sock_path.stat().st_mode) == 0o600

        victim = sorted(pids)[0]
        os.kill(int(victim), signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:      # until the supervisor has started another in its slot
            rows = _rows(server)
            now = {r[0].split("/")[1] for r in rows}
            if len(now) == 2 and victim not in now and all(r[5] == "active" for r in rows):
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"no restarted worker behind the admin port:\n{server.log.read_text()}")

        write_plugin(server.folder, "3.0.0")
        reload = server.cli("reload", "stamp")
        assert reload.returncode == 0, (reload.stdout, reload.stderr)
        after = _pids_by_version(server.port, 2)
        assert list(after) == ["3.0.0"] and len(after["3.0.0"]) == 2 and victim not in after["3.0.0"], after
    finally:
        stop(server.proc)


def test_reloads_through_the_admin_port_under_load_fail_no_request(tmp_path: Path) -> None:
    import threading

    server = Server(make_folder(tmp_path), workers=2)
    done = threading.Event()
    results: list[str] = []
    failures: list[str] = []

    def load() -> None:
        for _ in range(20_000):                 # bounded; the reloads end it much sooner
            if done.is_set():
                return
            try:
                results.append(stamp(server.port).partition(":")[0])
            except Exception as exc:            # any failed request fails the test below
                failures.append(repr(exc))

    threads = [threading.Thread(target=load) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for version in ("2.0.0", "3.0.0", "4.0.0"):
            write_plugin(server.folder, version)
            reload = server.cli("reload", "stamp", "--json")
            assert reload.returncode == 0, (reload.stdout, reload.stderr)
            assert json.loads(reload.stdout) == {"reloaded": "stamp", "version": version}
        seen = len(results)
        after = _pids_by_version(server.port, 2)
    finally:
        done.set()
        for t in threads:
            t.join(60)
        stop(server.proc)
    assert not failures, failures[:5]
    assert seen > 0 and set(results) <= {"1.0.0", "2.0.0", "3.0.0", "4.0.0"}
    assert list(after) == ["4.0.0"] and len(after["4.0.0"]) == 2, after
