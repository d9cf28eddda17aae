"""Retry policy for flattr delivery: pure functions of the attempt and the policy.

Document 000 lists the statuses to retry: 408, 409, 500, 502, 503, 504, 525 and
599; connection errors and timeouts are retried too. The original extension waited
60 s x 4^n (60, 240, 960, 3840 s). We keep that curve as the default (base 60 s,
factor 4, cap 3840 s) with *full jitter* (a uniform draw between 0 and the curve),
so that many hosts coming back after an outage do not retry in lock-step, and never
earlier than the server's ``Retry-After``. Unlike the original, the host never gives
up after five attempts: it keeps retrying at the cap until the item expires.

Nothing here reads a clock or a random source: both are arguments, so tests run
with zero backoff and exact numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

RETRYABLE_STATUSES = frozenset({408, 409, 500, 502, 503, 504, 525, 599})
FACTOR = 4.0


@dataclass(frozen=True)
class Policy:
    base_s: float = 60.0
    cap_s: float = 3840.0

    def __post_init__(self) -> None:
        if self.base_s < 0 or self.cap_s < 0:
            raise ValueError(f"backoff base {self.base_s} and cap {self.cap_s} must be >= 0")


def ceiling(attempt: int, policy: Policy) -> float:
    """The largest delay after failed attempt number ``attempt`` (1-based)."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    # Cap the exponent first: 4.0 ** 2000 overflows a float.
    exponent = min(attempt - 1, 64)
    return min(policy.cap_s, policy.base_s * FACTOR**exponent)


def delay(attempt: int, policy: Policy, draw: float) -> float:
    """Full-jitter delay: ``draw`` (uniform in [0, 1)) times the ceiling."""
    if not 0.0 <= draw <= 1.0:
        raise ValueError(f"draw must be within [0, 1], got {draw}")
    return draw * ceiling(attempt, policy)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """The absolute time (epoch s) a ``Retry-After`` header asks us to wait until.

    Accepts delta-seconds or an HTTP date (RFC 9110 10.2.3); returns None for a
    missing or unreadable value. A date in the past means "now".
    """
    if value is None:
        return None
    from flattr_host.core.numbers import whole_number

    text = value.strip()
    seconds = whole_number(text)  # RFC 9110's DIGIT: "²" or "١٢" are not seconds
    if seconds is not None:
        # Beyond a float's range the wait is "forever"; callers cap it
        # (api.RETRY_AFTER_MAX_S).
        return now + seconds if seconds < 10**300 else float("inf")
    from email.utils import parsedate_to_datetime  # only on this rare path

    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(now, when.timestamp())


def next_attempt_at(
    now: float, attempt: int, policy: Policy, draw: float, retry_after: float | None = None
) -> float:
    """When to try again after failed attempt ``attempt``: backoff, or Retry-After if later."""
    at = now + delay(attempt, policy, draw)
    if retry_after is not None and retry_after > at:
        return retry_after
    return at
