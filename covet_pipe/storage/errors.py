"""The errors a storage engine raises when a call cannot be done (as opposed to a bad argument).

Both are :class:`~covet_pipe.errors.PluginError`\\ s naming the engine, so the RESP front answers them
``-ERR <command>: <message>`` and the core, when a plugin hook lets one through, answers with their
``http_status`` (no traceback reaches a client; the server's log has it).
"""

from __future__ import annotations

from covet_pipe.errors import PluginError

__all__ = ["NotANumberError", "StorageError", "StorageUnavailableError", "WrongTypeError"]


class StorageError(PluginError):
    """A storage engine could not do a call (the server refused it); the message says why and what to do."""

    #: what the core answers when a plugin hook lets this through
    http_status = 500


class StorageUnavailableError(StorageError):
    """The storage engine cannot be reached (down, unreachable, too slow, refused the password).

    Each call raises it while this lasts; the engine reconnects by itself on a later call.
    """

    http_status = 503


class WrongTypeError(StorageError):
    """The key holds a value of another type (a list, a hash: written by another client of that Redis).

    ``reply`` is Redis's own error (``WRONGTYPE Operation against a key holding the wrong kind of value``),
    which RESP answers as Redis does; the message adds what to do (``key_prefix`` keeps covet-pipe's
    keys apart from other applications').
    """

    #: Redis's own words, as the RESP front answers them
    reply = "WRONGTYPE Operation against a key holding the wrong kind of value"


class NotANumberError(ValueError):
    """incr_by/incr_by_float met a value that is not a number, or the result would not fit.

    ``kind`` is ``"integer"`` or ``"float"``; RESP answers redis's own words for each.
    """

    def __init__(self, message: str, kind: str = "integer") -> None:
        super().__init__(message)
        self.kind = kind
