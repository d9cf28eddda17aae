"""Root fixtures: the fake flattr.com, one real subprocess per test session.

- ``fake_site`` (session): a started :class:`tests.support.fake_site.FakeSite`
  (seeded demo data), stopped at the end of the session.
- ``site`` (function): the same object, reset to its seeded start-up state
  before the test. Suites may override ``site`` with their own wrapper.

See docs/fake-site.md for the admin API behind them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from tests.support.fake_site import FakeSite

# Hosts started by the tests (and the browsers that start them) must never write
# into the developer's own keyring: without a session bus the default key backend
# (auto) uses the file. Keyring tests start a private Secret Service and hand its
# bus to the hosts they start (tests/support/secret_service.py).
os.environ.pop("DBUS_SESSION_BUS_ADDRESS", None)
if sys.platform in ("darwin", "win32"):
    os.environ.setdefault("FLATTR_KEY_BACKEND", "file")


@pytest.fixture(scope="session")
def fake_site() -> Iterator[FakeSite]:
    """One running fake site for the whole session."""
    server = FakeSite(seed=True).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def site(fake_site: FakeSite) -> FakeSite:
    """The session's fake site after an admin reset (seeded start-up state)."""
    fake_site.reset(seed=True)
    return fake_site
