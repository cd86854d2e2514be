"""The fast path from V1 JSON text to the float32 pixel array, without a Python object per pixel.

A 1,000-instance V1 body is ~2 MB holding 784,000 numbers. Parsing it with a JSON library makes
784,000 Python ints, and turning those into an array costs about as much again: together more
than the forward pass. Most clients send the plainest shape there is,

    {"instances": [[0, 0, 12, ...], [...], ...]}     (rows of 784 plain decimal numbers)

so this module recognises exactly that shape on the raw bytes and converts all numbers at once
with numpy: a few whole-body passes of byte arithmetic, then one gather at the end of each
number. It accepts a body only when it is certain that the general path (orjson + pydantic +
``service.codecs.instances``) would accept it and produce the same float32 values; on anything else
(``b64`` images, 28x28 nesting, another key, a minus sign, an exponent, NaN, more than 3 digits
after the dot, a value outside 0..255, a wrong row length, invalid JSON) it answers ``None`` and
the caller takes the general path, which also writes the error messages (``instances[i][j]:
...``). So the fast path never has to name an error itself, and an error costs a second parse
only for bodies that are refused anyway.

Why the values are identical: an integer token is exact in float32; a decimal ``I.F`` with at most
3 decimals is computed as the integer ``IF`` (< 10^6, exact in float64) divided by ``10^len(F)``,
one correctly rounded float64 division, which is what a correctly rounding JSON parser gives, and
then rounded to float32 as the general path does.
"""

from __future__ import annotations

import re

import numpy as np

from core.digits import N_PIXELS

_WHITESPACE = b" \t\n\r"  # JSON's whitespace (Python's \s would also take \x0b and \x0c)
_ALLOWED = b"0123456789.,[]" + _WHITESPACE
# The envelope: one key, "instances", whose array starts with a row ("[[") and ends with one ("]]").
_ENVELOPE = re.compile(rb'[ \t\n\r]*\{[ \t\n\r]*"instances"[ \t\n\r]*:[ \t\n\r]*\[(.*)\][ \t\n\r]*\}[ \t\n\r]*',
                       re.S)
_OPEN, _CLOSE, _DOT, _ZERO = 91, 93, 46, 48  # "[", "]", ".", "0"
_POWERS_OF_10 = np.array([1.0, 10.0, 100.0, 1000.0])
_PAD = 3  # separator bytes before the rows: looking back 3 characters never wraps around


def fast_pixels(raw: bytes, max_instances: int) -> np.ndarray | None:
    """(n, 784) float32 from a plain ``{"instances": [[numbers]...]}`` body, or None: take the general path.

    A returned array is validated: n within 1..``max_instances``, every row 784 numbers, each
    number a valid JSON number, finite and within 0..255.
    """
    match = _ENVELOPE.fullmatch(raw)
    if match is None:
        return None
    rows = match[1]
    if rows.translate(None, _ALLOWED):
        return None  # a character of another shape: quotes, braces, a minus sign, an exponent, NaN
    compact = rows.translate(None, _WHITESPACE)
    if len(compact) != len(rows) and _runs(_number(np.frombuffer(rows, dtype=np.uint8))) != _runs(
            _number(np.frombuffer(compact, dtype=np.uint8))):
        return None  # whitespace inside a number ("1 2", invalid JSON) would join two tokens once removed
    return _parse_rows(np.frombuffer(b",,," + compact, dtype=np.uint8), max_instances)


def _number(chars: np.ndarray) -> np.ndarray:
    return ((chars - _ZERO) < 10) | (chars == _DOT)  # uint8 arithmetic wraps: only '0'..'9' land below 10


def _runs(mask: np.ndarray) -> int:
    return int(np.count_nonzero(mask[1:] & ~mask[:-1])) + bool(len(mask) and mask[0])


def _parse_rows(chars: np.ndarray, max_instances: int) -> np.ndarray | None:
    """Rows ``[t,t,...],[t,...]`` (no whitespace, after _PAD separator bytes) -> values, or None."""
    if len(chars) < _PAD + 3 or chars[_PAD] != _OPEN or chars[-1] != _CLOSE:
        return None
    digit = (chars - _ZERO) < 10  # uint8 arithmetic wraps: only '0'..'9' land below 10
    dot = chars == _DOT
    number = digit | dot
    separator = ~number
    # Separators only ever stand alone inside a row; the only adjacent pairs allowed are the row
    # boundaries "]," and ",[" (in that order, glued: "],["). That excludes "[]", ",,", "[,",
    # ",]", "[[", "]]" and every other shape; brackets elsewhere are caught by the counts below.
    pairs = np.flatnonzero(separator[_PAD:-1] & separator[_PAD + 1:]) + _PAD
    n = len(pairs) // 2 + 1
    if len(pairs) % 2 or not 1 <= n <= max_instances:
        return None
    ends, starts = pairs[0::2], pairs[1::2]  # "]," at ends[i], ",[" at starts[i]
    if (not np.array_equal(starts, ends + 1) or (chars[ends] != _CLOSE).any()
            or (chars[starts + 1] != _OPEN).any()
            or np.count_nonzero(chars == _OPEN) != n or np.count_nonzero(chars == _CLOSE) != n):
        return None
    # Tokens: maximal runs of digits and dots, each followed by a separator (the last by "]").
    token_end = np.flatnonzero(number[:-1] & separator[1:])  # the last character of each token
    if len(token_end) != n * N_PIXELS:
        return None
    # Exactly 784 tokens before each row's "]" (and so 784 in every row).
    row_close = np.append(ends, len(chars) - 1)
    if not np.array_equal(np.searchsorted(token_end, row_close), np.arange(N_PIXELS, (n + 1) * N_PIXELS, N_PIXELS)):
        return None
    values = _token_values(chars, digit, dot, separator, token_end)
    if values is None or values.max() > 255:
        return None  # the general path names the pixel that is out of range
    return values.reshape(n, N_PIXELS)


def _token_values(chars: np.ndarray, digit: np.ndarray, dot: np.ndarray, separator: np.ndarray,
                  token_end: np.ndarray) -> np.ndarray | None:
    """float32 value of every token (given by the position of its last character).

    JSON's number grammar without sign and exponent: ``0|[1-9][0-9]*`` then optionally ``.[0-9]+``;
    here with at most 3 digits on either side of the dot (more is out of range, or left to the
    general path). Checked and computed on whole-body arrays, a few passes of byte arithmetic,
    then gathered at the token ends.
    """
    # No run of 4 digits (>= 1000, or a 4th decimal), and "01" is not JSON: no zero that starts a
    # token and is followed by a digit.
    if ((digit[:-3] & digit[1:-2] & digit[2:-1] & digit[3:]).any()
            or ((chars[1:-1] == _ZERO) & separator[:-2] & digit[2:]).any()):
        return None
    # Horner over each run of digits (a dot ends a run), up to 3 digits: at a run's last digit,
    # the run's integer value. uint16 throughout: 999 fits, and one pass costs a fraction of a ms.
    d = np.multiply(chars - _ZERO, digit, dtype=np.uint16)
    run = d.copy()
    run[1:] += d[:-1] * np.uint16(10)
    run[2:] += d[:-2] * digit[1:-1] * np.uint16(100)
    last_run = np.take(run, token_end)
    if not dot.any():
        return last_run.astype(np.float32)
    # A digit on both sides of every dot ("5.", ".5", "1..2" are not JSON), and one dot per token
    # ("1.2.3": two dots with 1 to 3 digits between).
    if (dot[:-1] & ~digit[1:]).any() or (dot[1:] & ~digit[:-1]).any():
        return None
    # A dot, then 1 to 3 digits, then a dot: two dots in one token.
    dot_digit = dot[:-2] & digit[1:-1]
    two = dot_digit[:-1] & digit[2:-1]
    if (dot_digit & dot[2:]).any() or (two & dot[3:]).any() or (two[:-1] & digit[3:-1] & dot[4:]).any():
        return None
    # Decimals k of each token: where its dot is, counted back from its last character through
    # digits only (a dot before a separator belongs to an earlier token).
    digit_1, digit_2 = np.take(digit, token_end - 1), np.take(digit, token_end - 2)
    k = (np.take(dot, token_end - 1).astype(np.intp) + 2 * (np.take(dot, token_end - 2) & digit_1)
         + 3 * (np.take(dot, token_end - 3) & digit_1 & digit_2))
    integer = np.take(run, token_end - k - 1) * (k > 0)  # the digits before the dot (0 without one)
    # I.F exactly as a correctly rounding parser reads it: the integer IF over 10**k, one float64
    # division (both exact), then float32 as the general path rounds it.
    scale = np.take(_POWERS_OF_10, k)
    return ((integer * scale + last_run) / scale).astype(np.float32)
