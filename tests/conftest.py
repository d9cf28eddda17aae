"""Root fixtures: the fake flattr.com, one real subprocess per test session.

- ``fake_site`` (session): a started :class:`tests.support.fake_site.FakeSite`
  (seeded demo data), stopped at the end of the session.
- ``site`` (function): the same object, reset to its seeded start-up state
  before the test. Suites may override ``site`` with their own wrapper.

See docs/fake-site.md for the admin API behind them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fake_site import FakeSite


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
