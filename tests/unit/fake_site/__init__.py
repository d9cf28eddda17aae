"""Tests of the simulated flattr.com (fake_site/, import name fake_flattr)."""
