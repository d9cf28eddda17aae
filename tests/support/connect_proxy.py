"""Moved to the installed package: flattr_testing.connect_proxy (kept importable from here)."""

from flattr_testing.connect_proxy import *  # noqa: F403
