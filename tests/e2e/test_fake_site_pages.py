"""The fake flattr.com pages in real Chromium, reached as https://flattr.com: the
handshake and its failure states, live push, things, auto-submit, the subscription
page, hostile log-in links and framing.

No extension is loaded: the test plays the extension's side with an init script
in the page (it answers ``flattr-trigger`` with ``flattr-authenticate``, stores
the ``flattr-token`` and answers ``flattr-authenticated``), as document 000
describes. Every ``flattr-*`` event the document sees is logged in
``window.__seen``.
"""

from __future__ import annotations

import http.server
import json
import threading
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


# Links an attacker could send; the browser, not a model of it, decides where it lands.
HOSTILE_LOGIN_LINKS = [
    "/login?next=/%09/evil.example/x",
    "/login?next=/%0d%0a/evil.example/x",
    "/login?next=/%5Cevil.example/x",
    "/login?next=%5C%5Cevil.example/x",
    "/login?next=%2F%2Fevil.example/x",
    "/login?next=https%3A%2F%2Fevil.example/x",
]


def test_hostile_next_never_leaves_flattr_com(context: Any, fsite: FakeSite) -> None:
    landed: list[str] = []
    context.route("https://evil.example/**", lambda route: (
        landed.append(route.request.url),
        route.fulfill(status=200, content_type="text/html", body="<h1>evil</h1>"))[-1])
    page = new_page(context, LOGGER)
    for link in HOSTILE_LOGIN_LINKS:
        page.goto("https://flattr.com" + link)
        page.fill("#username", "alice")
        page.fill("#password", "alice")
        page.click("#login-button")
        page.wait_for_load_state("load")
        assert urlsplit(page.url).netloc == "flattr.com", (link, page.url)
        assert urlsplit(page.url).path == "/", (link, page.url)
    assert landed == []


FRAMER = """<!doctype html><title>framer</title>
<iframe id="login" src="https://flattr.com/login"></iframe>
<iframe id="consent" src="https://flattr.com/oauth/authorize?response_type=code&client_id=demo-client&redirect_uri=http%3A%2F%2Flocalhost"></iframe>
<iframe id="settings" src="https://flattr.com/settings"></iframe>
<iframe id="thing" src="https://flattr.com/thing/423405"></iframe>"""


@pytest.fixture
def framer() -> Iterator[str]:
    """Another origin on loopback (a public one would be refused by Chromium's local
    network access checks before framing is even decided) serving FRAMER."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = FRAMER.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_login_consent_and_settings_refuse_to_be_framed(context: Any, fsite: FakeSite,
                                                        framer: str) -> None:
    page = new_page(context, LOGGER)
    log_in(page, "alice", "/settings")  # a session, so the consent page is what is framed
    page.goto(framer)
    page.wait_for_load_state("load")
    # The embeddable control loads; the others never show flattr.com content.
    page.frame_locator("#thing").locator("#flattr-count").wait_for()
    for name in ("login", "consent", "settings"):
        frame = page.locator(f"#{name}").element_handle().content_frame()
        assert frame is not None
        assert frame.locator("#login-form, #allow, #subscribe").count() == 0, name
    served = {e["path"] for e in fsite.journal(server="site", method="GET")}
    assert {"/login", "/oauth/authorize", "/settings"} <= served  # asked for, then refused


def answering(authenticate_detail: str, authenticated_detail: str = "{authenticated: true}") -> str:
    """A page-world stand-in for an extension that answers with these details (JS)."""
    return LOGGER + """
if (location.host === "flattr.com") {
  document.addEventListener("flattr-trigger", () => document.dispatchEvent(
    new CustomEvent("flattr-authenticate", {detail: (__AUTH__)})));
  document.addEventListener("flattr-token", () => document.dispatchEvent(
    new CustomEvent("flattr-authenticated", {detail: (__DONE__)})));
}
""".replace("__AUTH__", authenticate_detail).replace("__DONE__", authenticated_detail)


GOOD = '{build: "b", id: "__EXT_ID__", version: "1"}'.replace("__EXT_ID__", EXT_ID)


@pytest.mark.parametrize(("script", "state", "words"), [
    (answering("null"), "malformed-detail", "detail is null, not an object"),
    (answering('"not json"'), "malformed-detail", "a string that is not JSON"),
    (answering("[1, 2]"), "malformed-detail", "wrong shape"),
    (answering('{id: "", build: "b", version: "1"}'), "malformed-detail",
     "id must be a string of 1 to 128 characters"),
    (answering('Object.defineProperty({}, "id", {get() { throw new Error("no access"); }})'),
     "unreadable-detail", "cannot be read by the page (no access)"),
    (answering(GOOD, '{authenticated: "yes"}'), "malformed-detail",
     "authenticated must be true or false"),
    (answering(GOOD, '{get authenticated() { throw new Error("denied"); }}'),
     "unreadable-detail", "flattr-authenticated detail cannot be read"),
    (answering(GOOD, "{authenticated: false}"), "failed", "could not store the token"),
])
def test_wrong_answers_end_in_a_failure_state(context: Any, fsite: FakeSite, script: str,
                                              state: str, words: str) -> None:
    page = new_page(context, script)
    log_in(page, "alice", "/oauth/ext?timeout=1000")
    page.wait_for_selector(f'#handshake-status[data-state="{state}"]')
    assert words in page.inner_text("#handshake-status")
    report = fsite.wait_for(1, server="site", method="POST", path="/handshake/failure")[0]
    assert json.loads(report["body"])["state"] == state


def test_subscription_page_changes_it_and_tells_the_extension(context: Any,
                                                              fsite: FakeSite) -> None:
    fsite.create_user("gina", active=True)
    page = new_page(context)
    log_in(page, "gina", "/settings/account/subscription")
    page.wait_for_selector('#subscription-status[data-state="active"]')
    page.click("#unsubscribe")
    wait_seen(page, "flattr-subscription", {"subscription": {"active": False}})
    page.wait_for_selector('#subscription-status[data-state="inactive"]')
    changes = fsite.journal(server="site", method="POST", path="/settings/subscription")
    assert [json.loads(c["body"]) for c in changes] == [{"active": False}]
    page.click("#subscribe")
    wait_seen(page, "flattr-subscription", {"subscription": {"active": True}})
