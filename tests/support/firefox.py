"""Moved to the installed package: flattr_testing.firefox (kept importable from here)."""

from flattr_testing.firefox import *  # noqa: F403
