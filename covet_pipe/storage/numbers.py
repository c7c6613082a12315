"""The number rules of INCR and INCRBYFLOAT, shared by the storage engines that keep values themselves.

Integers are redis's: base-10, no sign ``+``, no leading zero, 64-bit signed. Floats are redis's
C ``long double`` (a 64-bit mantissa), computed exactly with fractions and rounded as x86 rounds, and
written with 17 digits after the point, trailing zeros dropped (``10.5``, ``5005.60000000000000009``).
"""

from __future__ import annotations

from fractions import Fraction

from covet_pipe.storage.errors import NotANumberError

__all__ = ["LLONG_MAX", "LLONG_MIN", "add_float", "add_int", "parse_int"]

LLONG_MAX = 2 ** 63 - 1
LLONG_MIN = -(2 ** 63)


def parse_int(raw: bytes) -> int | None:
    """*raw* as redis reads a 64-bit integer, or None."""
    if not raw or len(raw) > 20:
        return None
    digits = raw[1:] if raw[:1] == b"-" else raw
    if not digits.isdigit() or (digits[:1] == b"0" and (len(digits) > 1 or raw[:1] == b"-")):
        return None
    value = int(raw)
    return value if LLONG_MIN <= value <= LLONG_MAX else None


def add_int(old: bytes | None, delta: int) -> int:
    """*old* (None: 0) plus *delta*, or NotANumberError."""
    base = 0 if old is None else parse_int(old)
    if base is None:
        raise NotANumberError("value is not an integer or out of range")
    result = base + delta
    if not LLONG_MIN <= result <= LLONG_MAX:
        raise NotANumberError("increment or decrement would overflow")
    return result


def _long_double(x: Fraction) -> Fraction:
    """*x* rounded to the nearest value with a 64-bit mantissa (x86's long double, redis's float)."""
    if x == 0:
        return x
    sign, x = (-1 if x < 0 else 1), abs(x)
    e = x.numerator.bit_length() - x.denominator.bit_length() - 64
    while True:
        m = x / (Fraction(2) ** e)
        if m >= 2 ** 64:
            e += 1
        elif m < 2 ** 63:
            e -= 1
        else:
            break
    q, r = divmod(m.numerator, m.denominator)
    if 2 * r > m.denominator or (2 * r == m.denominator and q % 2):
        q += 1
    return sign * q * Fraction(2) ** e


def parse_float(raw: bytes) -> Fraction | None:
    """*raw* as redis reads a float (``strtold``: a long double), or None; infinities are ``_INF``."""
    text = raw.decode("latin-1")
    if not text or len(text) >= 5120 or text[0].isspace() or "_" in text:
        return None
    if text.lstrip("+-").lower() in ("inf", "infinity"):
        return _INF
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None
    return _long_double(value)


#: what parse_float answers for an infinity (the sum then is one: redis's NaN-or-Infinity error)
_INF = Fraction(2) ** 16384


def add_float(old: bytes | None, delta: bytes) -> bytes:
    """*old* (None: 0) plus *delta* (both text), as redis writes the result; or NotANumberError."""
    d = parse_float(delta)
    base = Fraction(0) if old is None else parse_float(old)
    if d is None or base is None:
        raise NotANumberError("value is not a valid float", "float")
    result = _long_double(base + d)
    if abs(d) >= _INF or abs(base) >= _INF or abs(result) >= _INF:
        raise NotANumberError("increment would produce NaN or Infinity", "float")
    # printf("%.17Lf"), then the trailing zeros (and a bare point) dropped
    scaled = result * 10 ** 17
    q, r = divmod(scaled.numerator, scaled.denominator)
    if 2 * r > scaled.denominator or (2 * r == scaled.denominator and q % 2):
        q += 1
    sign = "-" if q < 0 else ""
    digits = str(abs(q)).rjust(18, "0")
    text = f"{sign}{digits[:-17]}.{digits[-17:]}".rstrip("0").rstrip(".")
    return text.encode()
