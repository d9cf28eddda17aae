"""Fixtures of the end-to-end suite: the test kit's, under the names the tests use.

Everything comes from the flattr_testing pytest plugin (docs/testing.md); the
drivers and pages are in flattr_testing, the facts about our extension and the
suite's own helpers in tests/support/e2e.py. One set of scenario tests runs in
Chromium and in Firefox: a test asks for ``browser`` and lists its browsers with

    pytestmark = pytest.mark.browsers("chromium", "firefox")

(default: Chromium only; ``--flattr-browser NAME`` narrows the run to one browser).

| fixture here      | plugin fixture            |
|-------------------|---------------------------|
| ``site_endpoints``| ``flattr_fake_site``      |
| ``site``          | ``flattr_site`` (tests/conftest.py) |
| ``host``          | ``flattr_host``           |
| ``launch``        | ``flattr_launch``         |
| ``firefox_session``| ``flattr_firefox_session``|
| ``e2e_browser``   | ``flattr_browser_name``   |
| ``browser``       | ``flattr_browser``        |
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

# Names test modules used to import from this file; new modules import them from
# tests.support.e2e or flattr_testing.
from tests.support.e2e import *  # noqa: F403
from tests.support.e2e import FakeSite, Host, LaunchFn, grant_attention_before


@pytest.fixture(scope="session")
def site_endpoints(flattr_fake_site: FakeSite) -> FakeSite:
    """The session's fake site (its ``site``, ``api``, ``ca``, ``spki``, ``api_http``)."""
    return flattr_fake_site


@pytest.fixture
def host(flattr_host: Host) -> Host:
    """This test's host: data folder, environment, CLI, log."""
    return flattr_host


@pytest.fixture
def launch(flattr_launch: LaunchFn, tmp_path: Path) -> LaunchFn:
    """Chromium factory: ``launch(profile=None, extension=None, install_host=True,
    env=None, extra_args=(), granted_before=False)``; everything launched is closed at
    teardown. ``granted_before`` starts the profile as Chrome leaves it after the user
    accepted the attention permissions once (tests/support/e2e.py)."""

    def start(profile: Path | None = None, *args: Any, granted_before: bool = False,
              **kwargs: Any) -> Any:
        profile = profile or tmp_path / "profile"  # flattr_launch's default, too
        if granted_before:
            grant_attention_before(profile)
        return flattr_launch(profile, *args, **kwargs)

    return start


@pytest.fixture(scope="module")
def firefox_session(flattr_firefox_session: Any) -> Any:
    """The module's Firefox (proxy, fake CA trusted, recorder preloaded)."""
    return flattr_firefox_session


@pytest.fixture
def e2e_browser(flattr_browser_name: str) -> str:
    """"chromium" or "firefox", from the ``browsers`` marker."""
    return flattr_browser_name


@pytest.fixture
def browser(flattr_browser: Any) -> Any:
    """A browser with the extension and the host installed (``e2e_browser``)."""
    return flattr_browser
