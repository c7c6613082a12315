"""examples/app.py: every built-in registered, served for real."""

from __future__ import annotations

import time

import httpx
import jwt


def test_example_app_serves_public_guards_private_and_answers_preflight(serve):
    from examples import app as example

    token = jwt.encode({"permissions": ["/private:GET"], "exp": int(time.time()) + 300}, example.SECRET,
                       algorithm="HS256")
    with serve(example.app) as s:
        states = {p["name"]: p["state"] for p in example.manager.list_plugins()}
        public = httpx.get(s.url + "/", headers={"origin": "https://a.example.com"})
        anonymous = httpx.get(s.url + "/private")
        allowed = httpx.get(s.url + "/private", headers={"authorization": f"Bearer {token}"})
        pre = httpx.options(s.url + "/private", headers={"origin": "https://a.example.com",
                                                         "access-control-request-method": "GET"})
    assert states == dict.fromkeys(["request_id", "cors", "jwt_handler", "jwt_auth", "auth_guard", "memory", "resp"],
                                   "active")
    assert public.json() == {"hello": "world", "path": "/"}
    assert public.headers["access-control-allow-origin"] == "*"
    assert len(public.headers["x-request-id"]) == 32
    assert anonymous.status_code == 401
    assert allowed.status_code == 200
    assert allowed.json() == {"hello": "world", "path": "/private"}
    assert pre.status_code == 200
