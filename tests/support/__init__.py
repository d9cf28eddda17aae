"""Helpers shared by the test suites (real processes, real browsers)."""
