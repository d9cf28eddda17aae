"""Whole numbers from outside text: ASCII digits or nothing."""

from __future__ import annotations

import pytest

from flattr_host.core.numbers import whole_number


@pytest.mark.parametrize(("text", "expected"), [
    ("0", 0), ("007", 7), ("65535", 65535), ("9" * 400, int("9" * 400)),
    ("", None), (" 1", None), ("1 ", None), ("+1", None), ("-1", None), ("1.0", None),
    ("1_000", None), ("\u00b2", None), ("1\u00b9", None), ("\u0661\u0662", None),
    ("\uff11", None), ("9" * 5000, None),
])
def test_whole_number(text: str, expected: int | None) -> None:
    assert whole_number(text) == expected
