"""``covet-pipe list``, ``health`` and ``reload NAME``: a running server's admin API, over HTTP.

The URL comes from ``--url`` or ``COVET_PIPE_ADMIN_URL`` (default ``http://127.0.0.1:9901``), the
token from the first line of ``--token-file`` or from ``COVET_PIPE_ADMIN_TOKEN``. The answer is a
table for people, or the API's JSON document with ``--json``. Exit codes: 0 done; 1 the server said
no (a failed reload, an unknown plugin, health not ``ok``); 2 bad usage (no token); 3 nothing answers
at the URL; 4 the token was refused (or this address is rate-limited).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlsplit

from covet_pipe.cli.errors import (EXIT_FAILED, EXIT_OK, FailedError, RefusedError, UnreachableError,
                                   UsageError)
from covet_pipe.cli.tables import health_table, plugins_table, reload_lines

__all__ = ["DEFAULT_URL", "URL_ENV", "TOKEN_ENV", "add_client_commands", "admin_call", "admin_token"]

DEFAULT_URL = "http://127.0.0.1:9901"
URL_ENV = "COVET_PIPE_ADMIN_URL"
TOKEN_ENV = "COVET_PIPE_ADMIN_TOKEN"
#: the largest answer read from the admin API
MAX_ANSWER = 16 * 1024 * 1024


def admin_token(token_file: str | None) -> str:
    """The token from *token_file*'s first line, else from ``COVET_PIPE_ADMIN_TOKEN``."""
    if token_file is not None:
        try:
            with open(token_file, encoding="utf-8") as f:
                token = f.readline().strip()
        except OSError as exc:
            raise UsageError(f"--token-file {token_file}: cannot read it ({exc.strerror}); give the file "
                             "the server's --admin-token-file names") from None
        if not token:
            raise UsageError(f"--token-file {token_file}: the file is empty; the token goes on its first line")
        return token
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise UsageError(f"no admin token: give --token-file or set {TOKEN_ENV}")
    return token


def _base_url(url: str | None) -> str:
    base = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--url {base}: expected an http:// URL such as {DEFAULT_URL}")
    return base


def admin_call(url: str | None, token: str, method: str, path: str,
               timeout: float = 10.0) -> tuple[int, Any]:
    """(status, JSON document) of ``METHOD url+path`` with the bearer *token*.

    :raises UnreachableError: nothing answers at the URL.
    :raises RefusedError: 401, 403 or 429.
    """
    base = _base_url(url)
    request = urllib.request.Request(base + path, method=method, data=b"" if method == "POST" else None,
                                     headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            status, body = answer.status, answer.read(MAX_ANSWER)
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read(MAX_ANSWER)
        retry_after = exc.headers.get("Retry-After")
        exc.close()
        _refused(base, status, retry_after)
    except (urllib.error.URLError, socket.timeout, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UnreachableError(
            f"cannot reach the admin API at {base} ({reason}); is `covet-pipe serve --admin ...` running? "
            f"(--url or {URL_ENV} say where it listens)") from None
    try:
        return status, json.loads(body)
    except ValueError:
        raise FailedError(f"{method} {base}{path} answered {status} with a body that is not JSON; "
                          "is --url the admin port, not the app's?") from None


def _refused(base: str, status: int, retry_after: str | None) -> None:
    if status == 401:
        raise RefusedError(f"the admin API at {base} asked for credentials (401); give --token-file or "
                           f"set {TOKEN_ENV}")
    if status == 403:
        raise RefusedError(f"the admin API at {base} refused the token (403); use the token in the file "
                           "the server's --admin-token-file names")
    if status == 429:
        raise RefusedError(f"the admin API at {base} is refusing this address after too many failed "
                           f"attempts (429); wait {retry_after or 'a minute'} s and try with the right token")


def _print_json(document: Any) -> None:
    json.dump(document, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def _run_list(args: argparse.Namespace) -> int:
    status, document = admin_call(args.url, admin_token(args.token_file), "GET", "/_plugins", args.timeout)
    if status != 200 and not _is_per_worker(document):
        raise FailedError(f"GET /_plugins answered {status}: {document}")
    if args.json:
        _print_json(document)
    else:
        print(plugins_table(document))
    return EXIT_OK if status == 200 else EXIT_FAILED       # a worker that did not answer: 1


def _is_per_worker(document: Any) -> bool:
    return isinstance(document, dict) and isinstance(document.get("workers"), list)


def _health_ok(document: Any) -> bool:
    workers = document.get("workers") if isinstance(document, dict) else None
    if isinstance(workers, list):
        return all(isinstance(w.get("document"), dict) and w["document"].get("status") == "ok" for w in workers)
    return isinstance(document, dict) and document.get("status") == "ok"


def _run_health(args: argparse.Namespace) -> int:
    status, document = admin_call(args.url, admin_token(args.token_file), "GET", "/_plugins/health",
                                  args.timeout)
    if status not in (200, 503) and not _is_per_worker(document):
        raise FailedError(f"GET /_plugins/health answered {status}: {document}")
    if args.json:
        _print_json(document)
    else:
        print(health_table(document))
    return EXIT_OK if _health_ok(document) else EXIT_FAILED


def _run_reload(args: argparse.Namespace) -> int:
    path = f"/_plugins/{quote(args.name, safe='')}/reload"
    status, document = admin_call(args.url, admin_token(args.token_file), "POST", path, args.timeout)
    if args.json:
        _print_json(document)
    elif status == 200:
        print("\n".join(reload_lines(args.name, document)))
    if status == 200:
        return EXIT_OK
    if args.json:
        return EXIT_FAILED
    if status == 404:
        known = document.get("plugins") if isinstance(document, dict) else None
        raise FailedError(f"no plugin named {args.name!r} on the server"
                          + (f"; it has: {', '.join(known)}" if known else ""))
    raise FailedError("\n".join(reload_lines(args.name, document)) or f"POST {path} answered {status}")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help=f"the admin API (default: ${URL_ENV}, else {DEFAULT_URL})")
    p.add_argument("--token-file", metavar="FILE",
                   help=f"a file whose first line is the admin token (default: ${TOKEN_ENV})")
    p.add_argument("--json", action="store_true", help="print the API's JSON document instead of a table")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for the answer (default 10)")


def add_client_commands(sub: Any) -> None:
    """The ``list``, ``health`` and ``reload`` subcommands."""
    what = "of a running `covet-pipe serve --admin` (or any server with admin_app mounted)"
    listing = sub.add_parser("list", help="the plugins " + what,
                             description="GET /_plugins: every plugin with its version, kind, style, "
                                         "state and counters.")
    _common(listing)
    listing.set_defaults(run=_run_list)
    health = sub.add_parser("health", help="the health " + what + "; exit 1 unless it is ok",
                            description="GET /_plugins/health: the overall status and each plugin's "
                                        "state and error. Exit 0 when ok, 1 when degraded or failed.")
    _common(health)
    health.set_defaults(run=_run_health)
    reload = sub.add_parser("reload", help="reload one plugin " + what,
                            description="POST /_plugins/NAME/reload: load the plugin's file again and swap "
                                        "it in; when the new version fails the old one keeps serving (exit 1).")
    reload.add_argument("name", metavar="NAME", help="the plugin's name (covet-pipe list shows them)")
    _common(reload)
    reload.set_defaults(run=_run_reload)
