"""Text from outside (a client's bytes, a plugin's output) made safe for one log line.

A log line is the operator's evidence. Anything a client or a plugin controls (a request target, a header value,
a request id, a RESP key, a sandboxed plugin's stderr) reaches a log only through :func:`printable`, so that a
CR, LF, ESC or other control character cannot forge a second line or drive the operator's terminal.
"""
from __future__ import annotations

__all__ = ["printable"]

# C0 controls, DEL and C1 controls, plus the Unicode line and paragraph separators that some viewers break on.
_TABLE = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_TABLE.update({0x2028: "\\u2028", 0x2029: "\\u2029", ord("\\"): "\\\\"})
_TABLE.update({ord("\t"): "\\t", ord("\n"): "\\n", ord("\r"): "\\r"})
_TABLE_DECODED = {k: v for k, v in _TABLE.items() if k != ord("\\")}   # for bytes, whose "\\" is doubled already


def printable(text: str | bytes | bytearray | memoryview, limit: int | None = None) -> str:
    """Return ``text`` with every control character escaped (``\\n``, ``\\x1b``, ``\\\\`` ...).

    Bytes are decoded as UTF-8 with undecodable bytes shown as ``\\xNN``. With ``limit``, the result is cut to
    that many characters of the input and ``...`` marks the cut.
    """
    if isinstance(text, (bytes, bytearray, memoryview)):
        # A literal backslash is doubled first, so the "\xNN" that backslashreplace writes stays unambiguous.
        text = bytes(text).replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")
        cut = text if limit is None or len(text) <= limit else text[:limit]
        out = cut.translate(_TABLE_DECODED)
    else:
        cut = text if limit is None or len(text) <= limit else text[:limit]
        out = cut.translate(_TABLE)
    return out if cut is text else out + "..."
