"""``make admin-fuzz``: schemathesis against the admin API, served by a real uvicorn on 127.0.0.1.

The server is a PluginManager with four plugins (one that depends on another, one whose hook
raises on ``/boom``) behind ``wrap`` and ``admin_app`` with a token file, as docs/admin.md mounts
them. The admin API's own OpenAPI document (fetched with the token) drives schemathesis with every
check on and a bounded number of examples per operation; its exit status is this script's. A route
that answers a stream of server-sent events is left out (it never ends by itself).

The failed-attempt rate limit would answer 429 to everything once the fuzzer's probes without the
token (the ``ignored_auth`` check) pass ten a minute, and then nothing else would be tested. So the
app under test gives every request an address of its own (``10.x.y.z``); the limit itself is tested
in tests/admin/test_admin_api.py. It also drops the requests' cookies: schemathesis keeps the cookies
a response sets, so a browser session opened by one call would answer for every later call made
"without credentials"; the bearer token is what is fuzzed here, the session has tests of its own.
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests._process import free_port, start_until_ready, stop  # noqa: E402

PLUGIN = '''
from covet_pipe import MiddlewarePlugin

class P(MiddlewarePlugin):
    name = {name!r}
    version = "1.0.0"
    priority = {priority}
    dependencies = {deps!r}

    def process_request(self, request, ctx):
        if {raises!r} and request.path.startswith("/boom"):
            raise ValueError("boom")
        return None

plugin = P()
'''

APP = '''
import itertools
from covet_pipe import PluginConfig, PluginManager, admin_app, wrap

manager = PluginManager(PluginConfig(plugin_paths=["plugins"], hot_reload=True, entry_points=False))

async def hello(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})

served = wrap(hello, manager)
admin = admin_app(manager, token_file="admin-token")
_seq = itertools.count(1)

async def app(scope, receive, send):
    if scope["type"] == "http" and (scope["path"].startswith("/_plugins") or scope["path"] == "/metrics"):
        n = next(_seq)      # an address of its own per request, and no cookie (see fuzz/fuzz_admin_api.py)
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"cookie"]
        await admin(dict(scope, client=(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", 1), headers=headers),
                    receive, send)
    else:
        await served(scope, receive, send)
'''

#: a well-formed request may still name a plugin that is not there (404), a file that does not load
#: (422) or a name taken (409): those are the API's answers to valid input, not rejections of it
CONFIG = '''
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "404", "409", "422"]
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--st", default="st", help="the schemathesis command")
    parser.add_argument("--max-examples", type=int, default=50, help="examples per operation")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--report-dir", default=str(ROOT / "build" / "admin-fuzz-report"))
    parser.add_argument("--exclude-path", action="append", default=[], help="a path to leave out (repeatable)")
    args = parser.parse_args()
    st = str(Path(args.st).resolve()) if "/" in args.st else args.st
    with tempfile.TemporaryDirectory(prefix="covet-admin-fuzz-") as tmp:
        folder = Path(tmp)
        (folder / "plugins").mkdir()
        for name, priority, deps, raises in [("stamp", 100, [], False), ("base", 50, [], False),
                                             ("needs_base", 200, ["base>=1"], False), ("boom", 300, [], True)]:
            (folder / "plugins" / f"{name}.py").write_text(
                PLUGIN.format(name=name, priority=priority, deps=deps, raises=raises))
        token = secrets.token_urlsafe(32)
        (folder / "admin-token").write_text(token + "\n")
        (folder / "fuzzapp.py").write_text(APP)
        (folder / "schemathesis.toml").write_text(CONFIG)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_until_ready([sys.executable, "-m", "uvicorn", "fuzzapp:app", "--host", "127.0.0.1",
                                  "--port", str(port), "--no-access-log"], port, folder, folder / "server.log")
        try:
            req = urllib.request.Request(base + "/_plugins/openapi.json", headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(req, timeout=10) as r:
                schema = json.loads(r.read())
            (folder / "openapi.json").write_text(json.dumps(schema))
            # a stream (server-sent events) never ends by itself: schemathesis would only time out on it
            streams = [path for path, item in schema["paths"].items() for op in item.values()
                       if "text/event-stream" in json.dumps(op.get("responses", {}).get("200", {}))]
            cmd = [st, "--no-color", "--config-file", str(folder / "schemathesis.toml"), "run", str(folder / "openapi.json"),
                   "--url", base, "-H", f"Authorization: Bearer {token}", "--checks", "all",
                   "--max-examples", str(args.max_examples), "--seed", str(args.seed), "--workers", "1",
                   "--phases", "examples,coverage,fuzzing", "--generation-database", "none",
                   "--request-timeout", "30", "--report", "junit", "--report-dir", args.report_dir]
            for path in streams + args.exclude_path:
                cmd += ["--exclude-path", path]
            print("$", " ".join(c if token not in c else c.replace(token, "<token>") for c in cmd), flush=True)
            status = subprocess.run(cmd, cwd=folder, timeout=1800).returncode
        finally:
            stop(proc)
        log = (folder / "server.log").read_text()
        if "Traceback" in log:
            print("the server logged a traceback:\n" + log[-5000:])
            status = status or 1
        return status


if __name__ == "__main__":
    sys.exit(main())
