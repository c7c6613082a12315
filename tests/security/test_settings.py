"""Unsafe settings are refused with a message that shows the fix; through covet-pipe serve the rest keeps serving."""

from __future__ import annotations

from pathlib import Path

import pytest

from covet_pipe.builtin import CORS, AuthGuard, JWTAuth
from tests.security import _apps
from tests.security._servers import body, covet_serve, get

BAD = {
    "cors_star_credentials.py": ("CORS(allow_origins=['*'], allow_credentials=True)",
                                 "list the origins instead, such as CORS(allow_origins=['https://app.example.com'], "
                                 "allow_credentials=True), or pass allow_any_origin_with_credentials=True"),
    "guard_no_slash.py": ("AuthGuard(protect=['admin'], name='g1')", "starts with '/'"),
    "guard_glob.py": ("AuthGuard(protect=['/admin/*'], name='g2')", "write '/admin'"),
    "guard_empty.py": ("AuthGuard(protect=[], name='g3')", "omit protect to guard every path"),
}


@pytest.mark.parametrize("policy", ["closed", "open"])
def test_refused_settings_are_logged_with_their_fix_and_fail_by_their_policy(tmp_path: Path, policy: str) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    for name, (expr, _) in BAD.items():
        (plugins / name).write_text(f"from covet_pipe.builtin import CORS, AuthGuard\nplugin = {expr}\n")
        if policy == "open":
            (plugins / name.replace(".py", ".covet-plugin.toml")).write_text('failure_policy = "open"\n')
    with covet_serve("tests.security._apps:app", "--plugins", str(plugins), log=tmp_path / "log") as proc:
        denied = get(proc.port, "/admin")
        public = get(proc.port, "/docs")
        out = proc.output()
    if policy == "closed":      # a plugin file that failed to load holds its place: 503, never an open path
        assert public.status == 503 and denied.status == 401   # the app's own guard runs first
    else:                       # marked open: the app and its own guard serve on
        assert denied.status == 401 and public.status == 200 and body(public)["route"] == "public"
    for name, (_, message) in BAD.items():
        line = next((ln for ln in out.splitlines() if name in ln), "")
        assert "could not load plugin" in line and message in line, (name, out)


def test_token_without_exp_is_refused_through_the_server(tmp_path: Path) -> None:
    with covet_serve("tests.security._apps:app", log=tmp_path / "log") as proc:
        no_exp = get(proc.port, "/admin", [("authorization", "Bearer " + _apps.token({"exp": None}))])
        with_exp = get(proc.port, "/admin", [("authorization", "Bearer " + _apps.token())])
    assert no_exp.status == 401 and no_exp.header("www-authenticate") == 'Bearer error="invalid_token"'
    assert with_exp.status == 200


def test_require_exp_false_opts_out(tmp_path: Path) -> None:
    with covet_serve("tests.security._apps:lenient_app", log=tmp_path / "log") as proc:
        no_exp = get(proc.port, "/admin", [("authorization", "Bearer " + _apps.token({"exp": None}))])
        expired = get(proc.port, "/admin", [("authorization", "Bearer " + _apps.token({"exp": 1}))])
    assert no_exp.status == 200
    assert expired.status == 401                      # an exp that is there is still checked


def test_star_with_credentials_when_asked_for_echoes_origins_but_never_null(tmp_path: Path) -> None:
    with covet_serve("tests.security._apps:any_origin_app", log=tmp_path / "log") as proc:
        other = get(proc.port, "/x", [("origin", "https://any.example.net")])
        null = get(proc.port, "/x", [("origin", "null")])
    assert other.header("access-control-allow-origin") == "https://any.example.net"
    assert other.header("access-control-allow-credentials") == "true"
    assert null.status == 200 and null.header("access-control-allow-origin") is None


@pytest.mark.parametrize(("build", "message"), [
    (lambda: CORS(allow_origins=["*"], allow_credentials=True),
     r"CORS\(allow_origins=\['\*'\], allow_credentials=True\): every site, and the 'null' origin"),
    (lambda: JWTAuth(_apps.SECRET, require_exp="yes"), r"JWTAuth\(require_exp=...\): expected True or False"),
    (lambda: AuthGuard(protect=["/admin"], exempt=["/admin"]), "exempts all of the protected prefix"),
], ids=["cors-star-credentials", "jwt-require-exp-not-bool", "guard-exempt-covers-protect"])
def test_refused_settings_name_the_plugin_and_the_fix(build, message) -> None:
    with pytest.raises(ValueError, match=message):
        build()
