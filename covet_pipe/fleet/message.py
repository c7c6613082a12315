"""The fleet's message: one change, as JSON (never pickle), checked field by field when it comes in.

A :class:`Change` says that plugin ``plugin`` was reloaded by worker ``origin`` at ``at`` (epoch
seconds) from content whose sha256 is ``hash``, and that this change is generation ``generation`` of
the fleet. The plugin's code is never in it: every host loads its own file, and only when the hash
matches. :func:`decode` refuses anything else with a :class:`FleetMessageError` that says what is wrong
(the caller logs it and goes on); a message is at most :data:`MAX_MESSAGE` bytes.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, NamedTuple

__all__ = ["Change", "FleetMessageError", "MAX_MESSAGE", "VERSION", "decode", "encode"]

#: the format's version (``"v"``); a message of another version is refused, not guessed at
VERSION = 1
#: the longest message accepted, in bytes
MAX_MESSAGE = 4096
_KINDS = ("reload",)
_HASH = re.compile(r"^[0-9a-f]{64}$")
#: a plugin's name as a message may carry it (names come from plugin files; still bounded and printable)
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
_ORIGIN = re.compile(r"^[\x21-\x7e]{1,200}$")
_FIELDS = {"v", "generation", "kind", "plugin", "hash", "origin", "at"}


class FleetMessageError(ValueError):
    """A message that is not a fleet change (not JSON, a field missing or of the wrong kind ...)."""


class Change(NamedTuple):
    """One change of the fleet: a plugin reloaded somewhere, from content with this hash."""
    generation: int             #: the fleet's counter after this change (0 before it is stored)
    plugin: str
    hash: str                   #: sha256 (hex) of the plugin's file and manifest, or of its package
    origin: str                 #: the worker that made it (``host:pid:random``)
    at: float                   #: when the origin's reload ended (epoch seconds)
    kind: str = "reload"


def encode(change: Change) -> bytes:
    """The change as compact JSON (the fields of :class:`Change` and ``"v"``)."""
    return json.dumps({"v": VERSION, **change._asdict()}, separators=(",", ":")).encode()


def decode(data: bytes | str) -> Change:
    """The change a message holds.

    :raises FleetMessageError: naming what is wrong; nothing in the message is evaluated.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if not isinstance(data, bytes):
        raise FleetMessageError(f"a fleet message is bytes, got {type(data).__name__}")
    if len(data) > MAX_MESSAGE:
        raise FleetMessageError(f"a fleet message is at most {MAX_MESSAGE} bytes, got {len(data)}")
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        raise FleetMessageError("a fleet message is a JSON object; this one is not JSON") from None
    if not isinstance(doc, dict):
        raise FleetMessageError(f"a fleet message is a JSON object, got a {type(doc).__name__}")
    missing, extra = sorted(_FIELDS - set(doc)), sorted(set(doc) - _FIELDS)
    if missing or extra:
        what = (f"missing {', '.join(missing)}" if missing else "") + ("; " if missing and extra else "") \
            + (f"unknown {', '.join(_short(k) for k in extra[:3])}" if extra else "")
        raise FleetMessageError(f"a fleet message has the fields {', '.join(sorted(_FIELDS))}: {what}")
    if doc["v"] != VERSION or isinstance(doc["v"], bool):
        raise FleetMessageError(f"fleet message version {_short(doc['v'])} is not {VERSION}; run the same "
                                "covet-pipe release on every host")
    generation = doc["generation"]
    if isinstance(generation, bool) or not isinstance(generation, int) or not 0 <= generation < 2**63:
        raise FleetMessageError(f"'generation' is a counter (an integer >= 0), got {_short(generation)}")
    if doc["kind"] not in _KINDS:
        raise FleetMessageError(f"'kind' is one of {', '.join(_KINDS)}, got {_short(doc['kind'])}")
    for key, pattern, what in (("plugin", _NAME, "a plugin name"), ("hash", _HASH, "a sha256 in hex"),
                               ("origin", _ORIGIN, "a worker's id")):
        if not isinstance(doc[key], str) or not pattern.match(doc[key]):
            raise FleetMessageError(f"'{key}' is {what}, got {_short(doc[key])}")
    at = doc["at"]
    if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at) or at < 0:
        raise FleetMessageError(f"'at' is a time in seconds since the epoch, got {_short(at)}")
    return Change(generation, doc["plugin"], doc["hash"], doc["origin"], float(at), doc["kind"])


def _short(value: Any) -> str:
    """*value* for an error message: its repr, printable and cut (it comes from the network)."""
    text = repr(value)
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= 80 else text[:77] + "..."
