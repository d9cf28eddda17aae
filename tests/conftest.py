"""Root fixtures: the fake flattr.com, one real subprocess per test session.

Both come from the test kit's pytest plugin (flattr_testing, docs/testing.md):

- ``fake_site`` (session): ``flattr_fake_site``, a started
  :class:`flattr_testing.fake_site.FakeSite` (seeded demo data), stopped at the end.
- ``site`` (function): ``flattr_site``, the same object reset to its seeded start-up
  state before the test. Suites may override ``site`` with their own wrapper.

See docs/fake-site.md for the admin API behind them.
"""

from __future__ import annotations

import os
import sys

import pytest

from flattr_testing.fake_site import FakeSite

# Hosts started by the tests (and the browsers that start them) must never write
# into the developer's own keyring: without a session bus the default key backend
# (auto) uses the file. Keyring tests start a private Secret Service and hand its
# bus to the hosts they start (tests/support/secret_service.py).
os.environ.pop("DBUS_SESSION_BUS_ADDRESS", None)
if sys.platform in ("darwin", "win32"):
    os.environ.setdefault("FLATTR_KEY_BACKEND", "file")


@pytest.fixture(scope="session")
def fake_site(flattr_fake_site: FakeSite) -> FakeSite:
    """One running fake site for the whole session."""
    return flattr_fake_site


@pytest.fixture
def site(flattr_site: FakeSite) -> FakeSite:
    """The session's fake site after an admin reset (seeded start-up state)."""
    return flattr_site
