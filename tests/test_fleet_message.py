"""The fleet's message format: JSON round trip, and every bad message refused with a reason (nothing evaluated)."""

from __future__ import annotations

import json
import pickle

import pytest

from covet_pipe.errors import ConfigError
from covet_pipe import PluginConfig
from covet_pipe.fleet import Change, FleetMessageError, decode, encode
from covet_pipe.fleet.message import MAX_MESSAGE
from covet_pipe.fleet.store import keys_for

HASH = "ab" * 32
GOOD = {"v": 1, "generation": 7, "kind": "reload", "plugin": "stamp", "hash": HASH, "origin": "host:12:beef",
        "at": 1764777600.25}


def test_a_change_round_trips_through_json():
    change = Change(7, "stamp", HASH, "host:12:beef", 1764777600.25)
    data = encode(change)
    assert json.loads(data) == GOOD             # plain JSON, the format's version first
    assert decode(data) == change
    assert decode(data.decode()) == change      # a str from a client that decodes responses


def bad(**fields: object) -> bytes:
    doc = dict(GOOD)
    for key, value in fields.items():
        if value is KeyError:
            del doc[key]
        else:
            doc[key] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize("data, why", [
    (b"not json", "not JSON"),
    (pickle.dumps(GOOD), "not JSON"),                          # never unpickled
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "JSON object, got a list"),
    (bad(hash=KeyError), "missing hash"),
    (bad(extra="x"), "unknown 'extra'"),
    (bad(v=2), "version 2 is not 1"),
    (bad(v=True), "version True"),
    (bad(generation=-1), "'generation' is a counter"),
    (bad(generation=True), "'generation' is a counter"),
    (bad(generation="7"), "'generation' is a counter"),
    (bad(kind="unload"), "'kind' is one of reload"),
    (bad(plugin="../etc"), "'plugin' is a plugin name"),
    (bad(plugin=""), "'plugin' is a plugin name"),
    (bad(hash="AB" * 32), "'hash' is a sha256"),
    (bad(hash="ab" * 31), "'hash' is a sha256"),
    (bad(origin="a b"), "'origin' is a worker's id"),
    (bad(at=float("nan")), "'at' is a time"),
    (bad(at="now"), "'at' is a time"),
    (b'{"v": 1, "pad": "' + b"x" * MAX_MESSAGE + b'"}', f"at most {MAX_MESSAGE} bytes"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None)
def test_a_bad_message_is_refused_saying_what_is_wrong(data: bytes, why: str):
    with pytest.raises(FleetMessageError, match=r"(?s).*" + __import__("re").escape(why)):
        decode(data)


def test_a_refusal_quotes_a_hostile_value_printable_and_short():
    with pytest.raises(FleetMessageError) as info:
        decode(bad(plugin="\x1b[31m" + "x" * 500))
    text = str(info.value)
    assert "\x1b" not in text and len(text) < 200


def test_the_keys_of_a_fleet_share_one_cluster_slot():
    keys = keys_for("shop")
    assert keys == ("covet-pipe:fleet:{shop}:generation", "covet-pipe:fleet:{shop}:latest",
                    "covet-pipe:fleet:{shop}:changes")


@pytest.mark.parametrize("options, why", [
    ({"fleet": "redis://127.0.0.1:6379/0"}, "needs hot_reload=True"),
    ({"fleet": "http://127.0.0.1:6379", "hot_reload": True}, "expected a Redis URL"),
    ({"fleet": "redis://127.0.0.1/0", "fleet_name": "a b", "hot_reload": True}, "fleet_name"),
    ({"fleet": "redis://127.0.0.1/0", "fleet_password_file": "f", "fleet_password_env": "E",
      "hot_reload": True}, "not both"),
])
def test_fleet_settings_that_cannot_work_are_refused(options: dict, why: str):
    with pytest.raises(ConfigError, match=why):
        PluginConfig(**options)


def test_a_refused_fleet_url_does_not_show_its_password():
    with pytest.raises(ConfigError) as info:
        PluginConfig(fleet="http://user:s3cret@127.0.0.1:6379", hot_reload=True)
    assert "s3cret" not in str(info.value) and "***" in str(info.value)
