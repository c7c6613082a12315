"""Text from outside (a client's bytes, a plugin's output) made safe for one log line.

A log line is the operator's evidence. Anything a client or a plugin controls (a request target, a header value,
a request id, a RESP key, a sandboxed plugin's stderr) reaches a log only through :func:`printable`, so that a
CR, LF, ESC or other control character cannot forge a second line or drive the operator's terminal.
"""
from __future__ import annotations

import logging
import traceback

__all__ = ["escaped_traceback", "logger", "printable"]

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

# The standard library's words between chained exceptions.
_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def escaped_traceback(exc: BaseException) -> str:
    """Return the traceback of ``exc`` as the standard library prints it, with each exception's message escaped.

    A message can quote a client's bytes (``ValueError(f"bad path {path}")``); printed raw, its last
    line would be a forged log line. Frames (file, line, source) come from code, not clients.
    """
    chain: list[tuple[BaseException, str]] = []      # newest first, each with what links it to the next
    seen: set[int] = set()
    link = ""
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, _CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, _CONTEXT
        else:
            current = None
    out: list[str] = []
    for item, link in reversed(chain):
        if item.__traceback__ is not None:
            out.append("Traceback (most recent call last):\n")
            out.extend(traceback.format_tb(item.__traceback__))
        name = type(item).__qualname__
        module = type(item).__module__
        if module not in ("builtins", "__main__"):
            name = f"{module}.{name}"
        try:
            message = str(item)
        except Exception:
            message = "<exception str() failed>"
        out.append(f"{name}: {printable(message)}\n" if message else f"{name}\n")
        if link:
            out.append(link)
    return "".join(out).rstrip("\n")


class _EscapeTracebacks(logging.Filter):
    """Formats a record's traceback with :func:`escaped_traceback` before any handler does."""

    def filter(self, record: logging.LogRecord) -> bool:
        info = record.exc_info
        if info and info[1] is not None and not record.exc_text:
            # Formatter.format() uses exc_text when it is set, instead of formatting exc_info itself.
            record.exc_text = escaped_traceback(info[1])
        return True


_FILTER = _EscapeTracebacks()


def logger(name: str) -> logging.Logger:
    """Return ``logging.getLogger(name)``, whose tracebacks show exception messages escaped.

    For covet-pipe's loggers that log exceptions raised on a client's input (plugins' and apps' errors).
    """
    log = logging.getLogger(name)
    if _FILTER not in log.filters:
        log.addFilter(_FILTER)
    return log
