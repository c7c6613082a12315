"""JWTHandler: the jwt_handler service over PyJWT, found by name through the manager."""

from __future__ import annotations

import time

import jwt
import pytest

from covet_pipe import Plugin, PluginManager
from covet_pipe.builtin import JWTHandler

KEY = "k" * 32


class Probe(Plugin):
    """Asks for the jwt_handler service, as a third-party plugin would."""

    name = "probe"
    version = "1.0.0"
    dependencies = ["jwt_handler>=1,<2"]

    async def initialize(self, ctx):
        self.handler = ctx.get_service("jwt_handler")


async def test_service_lookup_returns_a_handler_that_round_trips_tokens():
    manager = PluginManager()
    manager.register(JWTHandler())
    probe = Probe()
    manager.register(probe)
    await manager.initialize_all()
    token = probe.handler.encode({"sub": "ann", "n": 1}, KEY, algorithm="HS256")
    assert probe.handler.decode(token, KEY, algorithms=["HS256"]) == {"sub": "ann", "n": 1}
    await manager.shutdown_all()


def test_decode_expired_token_raises_expired_signature_error():
    token = jwt.encode({"exp": int(time.time()) - 60}, KEY, algorithm="HS256")
    with pytest.raises(jwt.ExpiredSignatureError):
        JWTHandler().decode(token, KEY, algorithms=["HS256"])


def test_decode_with_leeway_accepts_recently_expired_token():
    token = jwt.encode({"exp": int(time.time()) - 5}, KEY, algorithm="HS256")
    assert JWTHandler(leeway=60).decode(token, KEY, algorithms=["HS256"])["exp"] < time.time()


def test_decode_wrong_key_raises_invalid_token_error():
    token = jwt.encode({"sub": "ann"}, KEY, algorithm="HS256")
    with pytest.raises(JWTHandler.InvalidTokenError):
        JWTHandler().decode(token, "x" * 32, algorithms=["HS256"])


def test_decode_missing_required_claim_raises():
    token = jwt.encode({"sub": "ann"}, KEY, algorithm="HS256")
    with pytest.raises(jwt.MissingRequiredClaimError, match="exp"):
        JWTHandler(require=["exp"]).decode(token, KEY, algorithms=["HS256"])


@pytest.mark.parametrize("algorithms", ["HS256", []], ids=["string", "empty"])
def test_decode_algorithms_not_a_list_raises_valueerror(algorithms):
    token = jwt.encode({"sub": "ann"}, KEY, algorithm="HS256")
    with pytest.raises(ValueError, match=r"such as \['HS256'\]"):
        JWTHandler().decode(token, KEY, algorithms=algorithms)


@pytest.mark.parametrize(("options", "message"), [
    (dict(leeway=-1), "seconds >= 0"),
    (dict(require="exp"), r"write require=\['exp'\]"),
], ids=["negative-leeway", "require-str"])
def test_bad_config_raises_valueerror(options, message):
    with pytest.raises(ValueError, match=message):
        JWTHandler(**options)
