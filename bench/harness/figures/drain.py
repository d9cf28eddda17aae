"""Drain: queued URLs delivered to the fake API over real HTTPS, URLs/s (issue 6).

Placeholder until the queue (issue 4) and the fake site (issue 3) land.
"""

from __future__ import annotations

from harness.context import Context
from harness.fakesite import require_fake_site
from harness.model import FigureResult
from harness.spawn import require_host

KEY = "drain"
TITLE = "drain (queued URLs to fake API, HTTPS)"
UNIT = "URLs/s"
TARGET = ">= 5,000 URLs/s"
LIMIT = 5000.0


def run(ctx: Context, result: FigureResult) -> None:
    """Measure drain throughput (see module docstring)."""
    require_host()
    require_fake_site()
