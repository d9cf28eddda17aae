"""An injectable wall clock: real time plus an offset tests can move forward.

Rate-limit windows, OAuth code lifetimes and subscription expiry all read the
time through one :class:`Clock`, so a test can cross an hour boundary by asking
the admin API to advance the clock instead of sleeping.
"""

from __future__ import annotations

import time


class Clock:
    """Unix time in seconds, shifted by :attr:`offset`."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        """Current (possibly shifted) Unix time in seconds."""
        return time.time() + self.offset

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` (>= 0) and return the new time."""
        if seconds < 0:
            raise ValueError(f"cannot move the clock backwards: advance={seconds}")
        self.offset += seconds
        return self.now()

    def reset(self) -> None:
        """Back to real time."""
        self.offset = 0.0
