"""The retry policy is a pure function of attempt, policy, draw and clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flattr_host.core import retry

ORIGINAL = retry.Policy(60.0, 3840.0)


def test_ceiling_follows_the_original_curve() -> None:
    assert [retry.ceiling(n, ORIGINAL) for n in range(1, 7)] == [60, 240, 960, 3840, 3840, 3840]


def test_full_jitter_spans_zero_to_ceiling() -> None:
    assert retry.delay(3, ORIGINAL, 0.0) == 0.0
    assert retry.delay(3, ORIGINAL, 0.5) == 480.0
    assert retry.delay(3, ORIGINAL, 1.0) == 960.0


@given(st.integers(1, 10_000), st.floats(0, 1))
def test_delay_never_exceeds_the_cap(attempt: int, draw: float) -> None:
    assert 0.0 <= retry.delay(attempt, ORIGINAL, draw) <= 3840.0


def test_zero_policy_means_no_wait() -> None:
    assert retry.next_attempt_at(10.0, 5, retry.Policy(0, 0), 0.7) == 10.0


def test_retry_after_is_a_floor() -> None:
    assert retry.next_attempt_at(100.0, 1, ORIGINAL, 0.1, retry_after=500.0) == 500.0
    assert retry.next_attempt_at(100.0, 1, ORIGINAL, 1.0, retry_after=120.0) == 160.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 1120.0),
        ("0", 1000.0),
        ("Thu, 01 Jan 1970 00:20:00 GMT", 1200.0),
        ("Thu, 01 Jan 1970 00:00:10 GMT", 1000.0),  # past date: now
        ("soon", None),
        ("-5", None),
        ("\u00b2", None),  # superscript two: str.isdigit() says yes, int() refuses
        ("1\u00b9", None),
        ("\u0661\u0662", None),  # Arabic-Indic digits are not RFC 9110 DIGITs
        ("99999999999999999999", 1000.0 + 99999999999999999999),
        ("9" * 400, float("inf")),  # beyond a float: "forever", capped by the caller
        ("9" * 5000, None),  # more digits than int() reads

        (None, None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert retry.parse_retry_after(header, 1000.0) == expected


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="attempt must be >= 1, got 0"):
        retry.ceiling(0, ORIGINAL)
    with pytest.raises(ValueError, match="draw must be within"):
        retry.delay(1, ORIGINAL, 1.5)
    with pytest.raises(ValueError, match="must be >= 0"):
        retry.Policy(-1, 5)


def test_retryable_statuses_are_documents_list() -> None:
    assert frozenset({408, 409, 500, 502, 503, 504, 525, 599}) == retry.RETRYABLE_STATUSES
