"""Whole numbers read from text that comes from outside (headers, names, keys).

``str.isdigit()`` is true for "²" and other digits that ``int()`` refuses, and
``int()`` refuses more than 4,300 digits; either would raise where the caller
meant "not a number". HTTP's DIGIT (RFC 9110) is ASCII only.
"""

from __future__ import annotations


def whole_number(text: str) -> int | None:
    """``text`` as an int when it is ASCII digits only (no sign, no spaces), else None."""
    if not (text.isascii() and text.isdigit()):
        return None
    try:
        return int(text)
    except ValueError:  # more digits than sys.get_int_max_str_digits() allows
        return None
