"""The fake flattr.com pages in real Chromium, reached as https://flattr.com.

No extension is loaded: the test plays the extension's side with an init script
in the page (it answers ``flattr-trigger`` with ``flattr-authenticate``, stores
the ``flattr-token`` and answers ``flattr-authenticated``), as document 000
describes. Every ``flattr-*`` event the document sees is logged in
``window.__seen``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from flattr_testing.fake_site import FakeSite
from tests.unit.fake_site.client import call

CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 10_000
EXT_ID = "abcdefghijklmnopabcdefghijklmnop"

LOGGER = """
window.__seen = [];
for (const name of ["flattr-installed", "flattr-uninstalled", "flattr-trigger",
                    "flattr-authenticate", "flattr-token", "flattr-authenticated",
                    "flattr-subscription"]) {
  document.addEventListener(name, (e) => window.__seen.push(
    {name, detail: e.detail === undefined ? null : JSON.parse(JSON.stringify(e.detail))}), true);
}
"""

# The extension's side of the protocol, as the test plays it.
FAKE_EXTENSION = LOGGER + """
if (location.host === "flattr.com") {
  try { sessionStorage.setItem("extension", "9.9.9"); } catch (e) {}
  document.addEventListener("flattr-trigger", (e) => {
    if (e.detail && e.detail.action === "authentication")
      document.dispatchEvent(new CustomEvent("flattr-authenticate",
        {detail: {build: "test-build", id: "__EXT_ID__", version: "9.9.9"}}));
  });
  document.addEventListener("flattr-token", (e) => {
    window.__token = e.detail;
    document.dispatchEvent(new CustomEvent("flattr-authenticated",
      {detail: {authenticated: true}}));
  });
  document.addEventListener("DOMContentLoaded", () =>
    document.dispatchEvent(new CustomEvent("flattr-installed")));
}
""".replace("__EXT_ID__", EXT_ID)


@pytest.fixture
def fsite(fake_site: FakeSite) -> FakeSite:
    """The session's fake site, reset (the e2e suite's own ``site`` wraps it differently)."""
    fake_site.reset(seed=True)
    return fake_site


@pytest.fixture
def context(playwright: Any, tmp_path: Path, fsite: FakeSite) -> Iterator[Any]:
    """A Chromium profile mapping flattr.com / api.flattr.com to the fake site."""
    home = tmp_path / "home"
    home.mkdir()
    ctx = playwright.chromium.launch_persistent_context(
        str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
        args=[f"--host-resolver-rules={fsite.host_resolver_rules()}",
              f"--ignore-certificate-errors-spki-list={fsite.spki}"],
    )
    ctx.set_default_timeout(WAIT_MS)
    try:
        yield ctx
    finally:
        ctx.close()


def new_page(context: Any, script: str = FAKE_EXTENSION) -> Any:
    page = context.new_page()
    page.add_init_script(script)
    return page


def log_in(page: Any, username: str, next_path: str) -> None:
    page.goto(f"https://flattr.com/login?next={quote(next_path)}")
    page.fill("#username", username)
    page.fill("#password", username)
    page.click("#login-button")
    path = urlsplit(next_path).path
    page.wait_for_url(lambda url: urlsplit(url).path == path and "flattr.com" in url)


def seen(page: Any, name: str) -> list[Any]:
    return [e["detail"] for e in page.evaluate("window.__seen") if e["name"] == name]


def wait_seen(page: Any, name: str, detail: Any) -> None:
    page.wait_for_function(
        "([n, d]) => window.__seen.some(e => e.name === n && JSON.stringify(e.detail) === d)",
        arg=[name, json.dumps(detail, separators=(",", ":"))],
    )


def test_handshake_issues_an_extension_token(context: Any, fsite: FakeSite) -> None:
    page = new_page(context)
    page.goto("https://flattr.com/oauth/ext")
    assert page.url.startswith("https://flattr.com/login")  # sign in first
    page.fill("#username", "alice")
    page.fill("#password", "alice")
    page.click("#login-button")
    page.wait_for_selector('#handshake-status[data-state="authenticated"]')
    assert seen(page, "flattr-trigger") == [{"action": "authentication"}]
    token = page.evaluate("window.__token")
    assert list(token) == ["accessToken", "subscription"]
    assert token["subscription"] == {"active": True}
    assert page.get_attribute("body", "data-extension") == "installed"
    assert "9.9.9" in page.inner_text("#extension-status")
    # The token works on the API with the flattr scope.
    bulk = call(fsite, "POST", "/rest/v2/flattr/bulk", token=token["accessToken"],
                body=[{"url": "https://e2e.example/"}])
    assert bulk.status == 200 and bulk.json()["results"][0]["status"] == "ok"
    minted = fsite.journal(server="site", method="POST", path="/oauth/ext/token")
    assert json.loads(minted[0]["body"])["id"] == EXT_ID


def test_handshake_page_without_extension(context: Any, fsite: FakeSite) -> None:
    page = new_page(context, LOGGER)
    log_in(page, "alice", "/oauth/ext?timeout=300")
    page.wait_for_selector('#handshake-status[data-state="no-extension"]')
    assert page.get_attribute("body", "data-extension") == "absent"
    assert seen(page, "flattr-token") == []


def test_admin_subscription_change_is_pushed_to_open_pages(context: Any,
                                                           fsite: FakeSite) -> None:
    fsite.create_user("dora", active=True)
    first = new_page(context)
    log_in(first, "dora", "/settings")
    second = new_page(context)
    second.goto("https://flattr.com/flattrs")
    for page in (first, second):
        page.wait_for_selector('body[data-push="open"]')
    result = fsite.set_subscription("dora", False)
    assert result["pushed_to"] == 2
    for page in (first, second):
        wait_seen(page, "flattr-subscription", {"subscription": {"active": False}})
    first.wait_for_selector('#subscription-status[data-state="inactive"]')
    # The settings page of one tab changes it server-side; the other tab hears it.
    first.click("#subscribe")
    wait_seen(second, "flattr-subscription", {"subscription": {"active": True}})
    wait_seen(first, "flattr-subscription", {"subscription": {"active": True}})
    assert len(seen(first, "flattr-subscription")) == 2  # no duplicate from the push echo
    token = fsite.create_user("dora-probe")["token"]
    assert call(fsite, "GET", "/rest/v2/users/dora", token=token).status == 200


def test_subscription_expiry_is_pushed(context: Any, fsite: FakeSite) -> None:
    fsite.create_user("erin", active=False)
    page = new_page(context)
    log_in(page, "erin", "/settings")
    page.wait_for_selector('body[data-push="open"]')
    fsite.set_subscription("erin", True, expires_in=0.3)
    wait_seen(page, "flattr-subscription", {"subscription": {"active": True}})
    wait_seen(page, "flattr-subscription", {"subscription": {"active": False}})


def test_thing_page_flattrs_through_the_api(context: Any, fsite: FakeSite) -> None:
    page = new_page(context)
    log_in(page, "bob", "/thing/423405")
    fsite.set_subscription("bob", True)
    page.click("#flattr")
    page.wait_for_selector('#flattr-result[data-result="ok"]')
    calls = fsite.journal(server="api", method="POST", path="/rest/v2/things/423405/flattr")
    assert calls and calls[0]["headers"]["Origin"] == "https://flattr.com"
    page.goto("https://flattr.com/flattrs")
    assert page.locator('tr.flattr[data-thing="423405"]').count() == 1
    page.goto("https://flattr.com/thing/423405")
    page.click("#flattr")
    page.wait_for_selector('#flattr-result[data-result="flattr_once"]')


def test_submit_auto_creates_then_finds_the_thing(context: Any, fsite: FakeSite) -> None:
    page = new_page(context)
    auto = ("/submit/auto?url=" + quote("https://fresh.example/a", safe="")
            + "&user_id=flattr&title=Fresh%20thing")
    log_in(page, "alice", auto)
    assert page.inner_text("h1") == "Fresh thing"
    page.click("#flattr")
    page.wait_for_url("https://flattr.com/thing/*")
    thing_url = page.url
    assert page.inner_text("#flattr-count") == "1"
    page.goto("https://flattr.com" + auto)
    assert page.url == thing_url  # an existing thing redirects to its page
