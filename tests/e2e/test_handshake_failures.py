"""The fake flattr.com's handshake pages never hang on what an extension gets wrong.

A small test extension (``detail_tester/``, a real content script) answers the
handshake the way the page's URL fragment asks: ``#uncloned`` (a content-script
object dispatched without ``cloneInto``, which a Firefox page may not read),
``#json`` (a JSON string, readable everywhere), ``#malformed`` (wrong types),
``#silent`` (no answer) and ``#unconfirmed`` (no ``flattr-authenticated``). Each
ends in a visible final state with the reason and the advice, and the page posts
it to ``POST /handshake/failure`` so the admin journal has it
(docs/fake-site.md, "Handshake"). Our own extension's handshake is covered by
test_handshake.py and test_identification.py in both browsers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.e2e import (
    CHROMIUM,
    RECORDER_JS,
    WAIT_MS,
    ChromiumPage,
    FirefoxBrowser,
    FlattrPage,
    Site,
    log_in,
    resolver_rules,
)

pytestmark = pytest.mark.browsers("chromium", "firefox")

TESTER = Path(__file__).resolve().parent / "detail_tester"
FAILURE = "/handshake/failure"
# Short handshake waits so a missing answer ends quickly (milliseconds).
TIMEOUT = 1000


class DetailTesterFirefox(FirefoxBrowser):
    """The module's Firefox with the detail tester instead of our extension."""

    def restore_extension(self) -> None:
        if self.addon is None:
            self.addon = self.firefox.install_extension(self.extension.path)


class DetailTesterChromium:
    """Chromium with only the detail tester loaded, flattr.com mapped to the fake."""

    name = "chromium"

    def __init__(self, playwright: Any, tmp_path: Path, site: Site) -> None:
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        self.context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "tester-profile"), executable_path=CHROMIUM, headless=True,
            env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
            args=[f"--disable-extensions-except={TESTER}", f"--load-extension={TESTER}",
                  f"--host-resolver-rules={resolver_rules(site.site, site.api, site.files)}",
                  f"--ignore-certificate-errors-spki-list={site.spki}"],
        )
        self.context.set_default_timeout(WAIT_MS)
        self.context.add_init_script(RECORDER_JS)

    def open(self, url: str) -> ChromiumPage:
        page = ChromiumPage(self.context.new_page())
        page.page.goto(url)
        return page

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tester(request: pytest.FixtureRequest, e2e_browser: str, site: Site,
           tmp_path: Path) -> Iterator[Any]:
    if e2e_browser == "chromium":
        driver: Any = DetailTesterChromium(request.getfixturevalue("playwright"), tmp_path, site)
    else:
        driver = DetailTesterFirefox(request.getfixturevalue("firefox_session"), TESTER)
    try:
        yield driver
    finally:
        driver.close()


def signed_in(tester: Any, username: str = "alice") -> None:
    page = tester.open("https://flattr.com/login?next=/flattrs")
    log_in(page, username)
    page.wait_for_url("https://flattr.com/flattrs")


def final_state(page: FlattrPage, state: str) -> str:
    """Wait for ``#handshake-status`` to reach ``state``; return its text."""
    page.wait_for_selector(f'#handshake-status[data-state="{state}"]')
    return page.text("#handshake-status")


def reports(site: Site, count: int) -> list[dict[str, Any]]:
    """The page's failure reports, once ``count`` of them have arrived."""
    entries = site.wait_for(count, server="site", method="POST", path=FAILURE)
    return [json.loads(entry["body"]) for entry in entries]


def test_uncloned_detail(tester: Any, site: Site) -> None:
    """Firefox: the page may not read the object -> unreadable-detail, with the fix;
    "Try again" (the sign-in page's retry) ends the same way, never hanging.
    Chromium clones details into the page, so the same extension signs in there."""
    signed_in(tester)
    page = tester.open(f"https://flattr.com/oauth/ext?timeout={TIMEOUT}#uncloned")
    if tester.name == "chromium":
        final_state(page, "authenticated")
        assert site.journal(server="site", method="POST", path=FAILURE) == []
        return
    text = final_state(page, "unreadable-detail")
    assert "flattr-authenticate detail cannot be read by the page" in text
    assert "cloneInto" in text and "JSON string" in text
    first = reports(site, 1)[0]
    assert first["state"] == "unreadable-detail" and first["page"] == "oauth-ext"
    assert "Permission denied" in first["message"]
    assert "cloneInto" in first["advice"]
    assert page.events("flattr-token") == []  # no token for a detail it could not read
    page.click("#retry")
    final_state(page, "unreadable-detail")
    assert len(reports(site, 2)) == 2
    # The settings page's "Connect the extension" fails the same, visibly.
    settings = tester.open(f"https://flattr.com/settings?timeout={TIMEOUT}#uncloned")
    settings.click("#connect")
    final_state(settings, "unreadable-detail")
    assert reports(site, 3)[-1]["page"] == "settings"


def test_json_string_detail_is_accepted(tester: Any, site: Site) -> None:
    signed_in(tester)
    page = tester.open(f"https://flattr.com/oauth/ext?timeout={TIMEOUT}#json")
    final_state(page, "authenticated")
    minted = site.journal(server="site", method="POST", path="/oauth/ext/token")
    assert json.loads(minted[0]["body"]) == {"id": "detail-tester", "build": "tester-build",
                                             "version": "1.0.0"}
    assert site.journal(server="site", method="POST", path=FAILURE) == []


def test_malformed_detail(tester: Any, site: Site) -> None:
    signed_in(tester)
    page = tester.open(f"https://flattr.com/oauth/ext?timeout={TIMEOUT}#malformed")
    text = final_state(page, "malformed-detail")
    assert "wrong shape" in text and "id must be a string" in text
    assert "build must be a string" in text and "version must be a string" in text
    assert "flattr-authenticate {build: string, id: string, version: string}" in text
    assert reports(site, 1)[0]["state"] == "malformed-detail"
    assert site.journal(server="site", method="POST", path="/oauth/ext/token") == []
    settings = tester.open(f"https://flattr.com/settings?timeout={TIMEOUT}#malformed")
    settings.click("#connect")
    final_state(settings, "malformed-detail")
    assert reports(site, 2)[-1]["page"] == "settings"


def test_no_answer_ends_and_a_late_extension_gets_the_retry(tester: Any, site: Site) -> None:
    signed_in(tester)
    page = tester.open(f"https://flattr.com/oauth/ext?timeout={TIMEOUT}#silent")
    text = final_state(page, "no-extension")
    assert f"within {TIMEOUT // 1000} s" in text
    report = reports(site, 1)[0]
    assert report["state"] == "no-extension" and report["timeoutMs"] == TIMEOUT
    # An extension that announces itself after the miss gets the documented retry
    # (played from the page's world here).
    page.evaluate("""void (() => {
      document.addEventListener("flattr-trigger", () => document.dispatchEvent(
        new CustomEvent("flattr-authenticate",
          {detail: {build: "late", id: "late-extension", version: "2.0.0"}})));
      document.addEventListener("flattr-token", () => document.dispatchEvent(
        new CustomEvent("flattr-authenticated", {detail: {authenticated: true}})));
      document.dispatchEvent(new CustomEvent("flattr-installed"));
    })()""")
    final_state(page, "authenticated")
    settings = tester.open(f"https://flattr.com/settings?timeout={TIMEOUT}#silent")
    settings.click("#connect")
    final_state(settings, "no-extension")
    assert reports(site, 2)[-1]["page"] == "settings"


def test_missing_confirmation_ends(tester: Any, site: Site) -> None:
    signed_in(tester)
    page = tester.open(f"https://flattr.com/settings?timeout={TIMEOUT}#unconfirmed")
    page.click("#connect")
    text = final_state(page, "unconfirmed")
    assert "no flattr-authenticated came" in text
    assert "flattr-authenticated {authenticated: true or false}" in text
    assert reports(site, 1)[0]["state"] == "unconfirmed"
    assert len(page.events("flattr-token")) == 1


FETCH_DOMAINS_JS = """(async () => {
  const url = "https://files.flattr.com/domains.json";
  const head = await fetch(url, {method: "HEAD", cache: "no-store"});
  const get = await fetch(url, {cache: "no-store"});
  const again = await fetch(url, {cache: "no-store",
    headers: {"If-None-Match": get.headers.get("etag")}});
  const list = await get.json();
  return {head: head.status, lastModified: head.headers.get("last-modified"),
          etag: get.headers.get("etag"), status: get.status, conditional: again.status,
          valid: Boolean(list.status) && Array.isArray(list.author)};
})()"""


def test_files_flattr_com_is_reachable_as_its_name(tester: Any, site: Site) -> None:
    """The original extension's domains list host, mapped like flattr.com (Chromium:
    host-resolver rules; Firefox: the CONNECT proxy), with HEAD and conditional GET."""
    page = tester.open("https://flattr.com/")
    page.wait_for_selector("#extension-status")
    result = page.evaluate(FETCH_DOMAINS_JS)
    assert result["head"] == 200 and result["status"] == 200 and result["valid"] is True
    assert result["lastModified"] and result["lastModified"].endswith(" GMT")
    assert result["etag"] == site.admin("GET", "files/domains")["etag"]
    assert result["conditional"] == 304
    methods = [e["method"] for e in site.journal(server="files") if e["method"] != "OPTIONS"]
    assert methods == ["HEAD", "GET", "GET"]  # the conditional GET needs a CORS preflight


def test_a_server_that_does_not_answer_ends_too(tester: Any, site: Site) -> None:
    """The site's own token request has a deadline as well (at least 5 s); the
    sign-in page's "Try again" then succeeds."""
    signed_in(tester)
    site.script("POST", "/oauth/ext/token", [{"fault": "hang"}], server="site")
    page = tester.open(f"https://flattr.com/oauth/ext?timeout={TIMEOUT}#proper")
    text = final_state(page, "failed")
    assert "did not issue a token (no answer within 5 s)" in text
    assert reports(site, 1)[0]["state"] == "failed"
    page.click("#retry")
    final_state(page, "authenticated")
