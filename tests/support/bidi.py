"""Moved to the installed package: flattr_testing.bidi (kept importable from here)."""

from flattr_testing.bidi import *  # noqa: F403
