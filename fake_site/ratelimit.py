"""Per-client hourly request budget (document 002, "Rate limiting").

Each client (its bearer token if it sent a known one, else its address) gets
``limit`` requests per hour. The hour starts with the client's first request and
``X-RateLimit-Reset`` is its end as a Unix timestamp. Every request to a rate
limited resource counts, the refused ones included.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_SECONDS = 3600
DEFAULT_LIMIT = 1000


@dataclass(frozen=True)
class Budget:
    """One client's standing after counting a request."""

    limit: int
    current: int
    reset: int

    @property
    def remaining(self) -> int:
        """Requests left in this window (never negative)."""
        return max(0, self.limit - self.current)

    @property
    def exceeded(self) -> bool:
        """True once the client has made more requests than the limit."""
        return self.current > self.limit

    def headers(self) -> dict[str, str]:
        """The four ``X-RateLimit-*`` headers, in the documented order."""
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Current": str(self.current),
            "X-RateLimit-Reset": str(self.reset),
        }


class RateLimiter:
    """Counts requests per client key in fixed hourly windows."""

    def __init__(self, now: Callable[[], float], limit: int = DEFAULT_LIMIT) -> None:
        self._now = now
        self.limit = limit
        self._windows: dict[str, tuple[float, int]] = {}

    def clear(self) -> None:
        """Forget all counts (admin reset)."""
        self._windows.clear()

    def _window(self, key: str) -> tuple[float, int]:
        now = self._now()
        start, count = self._windows.get(key, (now, 0))
        if now >= start + WINDOW_SECONDS:
            start, count = now, 0
        return start, count

    def hit(self, key: str) -> Budget:
        """Count one request for ``key`` and return the resulting budget."""
        start, count = self._window(key)
        self._windows[key] = (start, count + 1)
        return Budget(self.limit, count + 1, math.ceil(start + WINDOW_SECONDS))

    def peek(self, key: str) -> Budget:
        """The budget without counting a request (for ``GET /rate_limit``)."""
        start, count = self._window(key)
        return Budget(self.limit, count, math.ceil(start + WINDOW_SECONDS))
