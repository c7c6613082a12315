"""covet_pipe.testing as a pytest plugin: a plugin author's test file, run by a real pytest, with the fixtures.

Each case writes the author's plugins (``covet-pipe new``) and test file into pytester's folder and runs
pytest on them in a subprocess, as the author would: the fixtures come from the ``pytest11`` entry point
(or ``-p covet_pipe.testing``), load the plugins for real (a sandboxed one in its confined helper, a C one
built and dlopen'd) and serve them behind ``covet-pipe serve``. Warnings are errors in those runs too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from covet_pipe.cli.new import scaffold

pytest_plugins = ["pytester"]

INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
filterwarnings = error
addopts = -p no:cacheprovider
"""

AUTHOR_TESTS = '''
import os
from pathlib import Path

from covet_pipe import Request, Response


def test_in_process_plugin_acts_on_both_hooks(covet_plugin):
    greet = covet_plugin("greet/plugins/greet.py")
    assert greet.kind == "python" and greet.names == ["greet"]
    sent = greet.request("GET", "/x", headers={"x-mine": "1"})
    assert (sent.status, sent.body, sent.headers["x-greet"]) == (200, b"ok", "hello")
    assert (sent.app_path, sent.app_saw["x-mine"]) == ("/x", "1")
    assert greet.process_request(Request(path="/")) is None
    assert greet.process_response(Response(204)).headers["x-greet"] == "hello"


def test_sandboxed_plugin_runs_in_its_helper(covet_plugin):
    boxed = covet_plugin("boxed/plugins/boxed.py")
    assert boxed.kind == "sandboxed"
    assert boxed.request().headers["x-boxed"] == "hello"
    assert boxed.process_response(Response(200)).headers["x-boxed"] == "hello"
    (pid,) = boxed.helper_pids
    assert pid != os.getpid()
    with open(f"/proc/{pid}/status") as status:
        assert "Seccomp:\\t2" in status.read()


def test_native_plugin_is_built_and_loaded(covet_plugin, covet_build):
    so = covet_build("stamp/plugins/stamp.c")
    stamp = covet_plugin(so)
    assert stamp.kind == "native"
    assert stamp.request().headers["x-stamp"] == "hello"
    assert stamp.process_response(Response(201, body=b"made")).headers["x-stamp"] == "hello"
    assert stamp.process_request(Request()) is None


def test_served_plugin_reloads_after_an_edit(covet_server):
    server = covet_server("greet/plugins", reload=True)
    first = server.get("/", headers={"x-mine": "2"})
    assert (first.status, first.text, first.headers["x-greet"]) == (200, "ok", "hello")
    assert first.headers["x-app-saw-x-mine"] == "2"
    source = Path("greet/plugins/greet.py")
    edited = source.read_text().replace('"hello"', '"again"')
    after = server.edit("greet/plugins/greet.py", edited, until=lambda r: r.headers.get("x-greet") == "again")
    assert after.status == 200
'''


def _authored(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    for name, kind in (("greet", "python"), ("boxed", "sandboxed"), ("stamp", "c")):
        scaffold(name, kind, pytester.path / name)
        (pytester.path / name / "tests" / f"test_{name}.py").unlink()   # only the author's file below runs


def test_author_tests_using_every_fixture_pass(pytester: pytest.Pytester) -> None:
    _authored(pytester)
    pytester.makepyfile(test_author=AUTHOR_TESTS)
    result = pytester.runpytest_subprocess("test_author.py", timeout=240)
    result.assert_outcomes(passed=4)


def test_autoload_off_needs_dash_p_and_then_works(pytester: pytest.Pytester,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _authored(pytester)
    pytester.makepyfile(test_author=AUTHOR_TESTS.split("\n\ndef test_sandboxed")[0])
    pytester.makeini(INI.replace("asyncio_default_fixture_loop_scope = function\n", ""))   # no pytest-asyncio now
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    without = pytester.runpytest_subprocess("test_author.py", timeout=120)
    without.assert_outcomes(errors=1)
    without.stdout.fnmatch_lines(["*fixture 'covet_plugin' not found*"])
    loaded = pytester.runpytest_subprocess("-p", "covet_pipe.testing", "test_author.py", timeout=120)
    loaded.assert_outcomes(passed=1)


BROKEN_TESTS = '''
import pytest


def test_broken_module(covet_plugin):
    covet_plugin("bad/settings.py")


def test_missing_file(covet_plugin):
    covet_plugin("bad/nope.py")


def test_not_installed(covet_plugin):
    covet_plugin(entry_point="no_such_plugin")


@pytest.mark.asyncio
async def test_in_an_async_test(covet_plugin):
    covet_plugin("bad/settings.py")


def test_broken_server(covet_server):
    covet_server("bad")
'''


def test_broken_plugins_fail_the_test_with_the_loaders_message_and_no_traceback(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    (pytester.path / "bad").mkdir()
    (pytester.path / "bad" / "settings.py").write_text(
        'import json\nSETTINGS = json.load(open("/nonexistent/settings.json"))\n')
    pytester.makepyfile(test_broken=BROKEN_TESTS)
    result = pytester.runpytest_subprocess("test_broken.py", timeout=120)
    result.assert_outcomes(failed=5)
    result.stdout.fnmatch_lines([
        "*covet_plugin: bad/settings.py did not load: bad/settings.py: importing it raised FileNotFoundError:*"
        "; fix the module-level code",
        "*covet_plugin: bad/nope.py does not exist (relative paths are from *); give the plugin's .py, .so or "
        "package folder",
        "*covet_plugin: no installed plugin 'no_such_plugin' in the covet_pipe.plugins entry points*; pip install "
        "its package*",
        "*covet_plugin: called inside a running event loop (an async test); use it from a plain def test*",
        "*covet_server: covet-pipe serve exited * before serving*",
    ])
    out = result.stdout.str()
    assert "During handling" not in out and "Traceback" not in out.split("covet_server: covet-pipe serve")[0]


def test_a_reload_that_never_comes_names_the_file_and_the_last_reply(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    scaffold("greet", "python", pytester.path / "greet")
    pytester.makepyfile(test_noreload='''
from pathlib import Path


def test_edit_without_reload(covet_server):
    server = covet_server("greet/plugins")
    source = Path("greet/plugins/greet.py")
    server.edit(source, source.read_text().replace('"hello"', '"again"'),
                until=lambda r: r.headers.get("x-greet") == "again", timeout=2)
''')
    result = pytester.runpytest_subprocess("test_noreload.py", timeout=120)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*covet_server: after editing greet/plugins/greet.py, no reply to GET / passed the "
                                 "check within 2 s (last: Reply(status=200*); was it served with reload=True?*"])


def test_the_plugin_imports_nothing_a_test_does_not_ask_for() -> None:
    # pytest imports it at every start-up (the entry point): the manager, sandbox and server load when used
    probe = ("import sys, covet_pipe.testing; print(sorted(m for m in sys.modules if m.startswith(("
             "'covet_pipe.testing._', 'covet_pipe.sandbox', 'covet_pipe.server.launch', 'uvloop', 'pyseccomp'))))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
