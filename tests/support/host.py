"""Moved to the installed package: flattr_testing.host (kept importable from here)."""

from flattr_testing.host import *  # noqa: F403
