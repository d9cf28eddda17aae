"""Simulated flattr.com and api.flattr.com for demos and end-to-end tests.

Run it with ``flattr-fake-site`` or ``python -m fake_flattr``; see docs/fake-site.md.
"""

from __future__ import annotations

__all__ = ["FakeSiteError", "__version__"]

__version__ = "0.1.0"


class FakeSiteError(Exception):
    """Root of every exception this package raises on purpose."""
