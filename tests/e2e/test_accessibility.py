"""Automated accessibility audit (Chromium): axe-core, from npm (pinned in
tools/npm/package-lock.json, installed by ``make npm-tools``), injected into the
popup and into the fake flattr.com pages. Zero violations of the WCAG 2.0/2.1/2.2
level A and AA rules in every state checked. Also the popup's translations through
chrome.i18n (a German copy of the extension) and the host's ``problem`` line.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support.a11y import CONTRAST_JS, axe_run_js, axe_source, describe
from tests.support.e2e import (
    BULK_PATH,
    EXTENSION_DIR,
    ChromiumPage,
    ExtensionBrowser,
    LaunchFn,
    Site,
    log_in,
    page_handshake,
    wait_popup,
)

pytestmark = pytest.mark.browsers("chromium")


@pytest.fixture(scope="module")
def axe() -> str:
    return axe_source()


def audit(page: ChromiumPage, axe: str, where: str) -> None:
    """Inject axe-core (DevTools evaluation: extension pages' CSP does not apply to
    it) and fail on any WCAG 2 A/AA violation."""
    if not page.evaluate("typeof window.axe === 'object'"):
        cdp = page.page.context.new_cdp_session(page.page)
        injected = cdp.send("Runtime.evaluate", {"expression": axe})
        assert "exceptionDetails" not in injected, injected
        cdp.detach()
    violations: list[dict[str, Any]] = page.evaluate(axe_run_js())
    assert violations == [], f"{where}:\n{describe(violations)}"


def test_popup_passes_axe_in_every_state(
    browser: ExtensionBrowser, site: Site, axe: str, launch: LaunchFn
) -> None:
    popup = browser.popup_tab()
    wait_popup(popup, "!$('sign-in').hidden")
    audit(popup, axe, "popup signed out")

    site.create_user("ally", active=True)
    page, _token = page_handshake(browser, "ally")
    site.script("POST", BULK_PATH, [{"status": 400, "body": {"error": "invalid_parameters"}}])
    browser.flattr_this_page("https://blog.example/a11y")
    wait_popup(popup, "!$('retry-failed').hidden")
    popup.page.click("#retry-failed")
    wait_popup(popup, "$('message').textContent !== ''")
    audit(popup, axe, "popup signed in, failed item retried, info message")

    # The host's own problem line (get-state's `problem`), and an error message.
    browser.worker.evaluate(
        "setStatus({state: {...link.status.state, problem: 'delivery stopped'}})")
    wait_popup(popup, "!$('host-state-problem').hidden")
    assert popup.text("#host-state-problem") == "The host reports: delivery stopped"
    popup.evaluate("showMessage('Could not sign out: test', 'error')")
    audit(popup, axe, "popup with a host problem and an error")
    assert popup.evaluate(CONTRAST_JS)["failures"] == []
    popup.screenshot("popup-state-problem.png", selector="body")
    page.close()

    # The real toolbar popup on an article, with the attention section.
    article = browser.open_routed("https://read.example/", "<!doctype html><title>A</title>")
    action = browser.action_popup(article)
    action.wait_for("!document.getElementById('attention').hidden")
    action.call("Runtime.evaluate", {"expression": axe})
    violations = action.evaluate(axe_run_js())
    assert violations == [], f"toolbar popup with attention:\n{describe(violations)}"
    action.close()

    missing = launch(install_host=False, profile=browser.profile.parent / "no-host")
    lonely = missing.popup_tab()
    wait_popup(lonely, "$('host-status').dataset.phase === 'missing'")
    audit(lonely, axe, "popup host missing")


FAKE_SITE_PAGES = [
    "https://flattr.com/",
    "https://flattr.com/settings",
    "https://flattr.com/oauth/ext",
    "https://flattr.com/flattrs",
    "https://flattr.com/thing/313733",
    "https://flattr.com/profile/alice",
    "https://flattr.com/claim/313733",
    "https://flattr.com/submit/auto?url=https%3A%2F%2Fnew.example%2Fpost&title=New",
]


def test_fake_site_pages_pass_axe_and_contrast(
    browser: ExtensionBrowser, site: Site, axe: str
) -> None:
    page = browser.open("https://flattr.com/login")
    page.wait_event("flattr-installed")
    audit(page, axe, "login page")
    assert page.attribute("#username", "autocomplete") == "username"
    assert page.attribute("#password", "autocomplete") == "current-password"
    assert page.evaluate(CONTRAST_JS)["failures"] == []
    site.create_user("axel", active=True)
    log_in(page, "axel")
    page.page.wait_for_url("https://flattr.com/")
    for url in FAKE_SITE_PAGES:
        page.page.goto(url)
        page.page.wait_for_load_state("load")
        page.wait_for("document.body.dataset.extension !== 'unknown'")
        audit(page, axe, url)
        found = page.evaluate(CONTRAST_JS)
        assert found["failures"] == [], f"{url}: {found['failures']}"
    # Live regions on every region that changes while the page is open.
    page.page.goto("https://flattr.com/settings")
    roles = page.evaluate(
        "Object.fromEntries(['extension-status', 'handshake-status', 'settings-result',"
        " 'subscription-status'].map((id) =>"
        " [id, document.getElementById(id).getAttribute('role')]))")
    assert roles == {"extension-status": "status", "handshake-status": "status",
                     "settings-result": "alert", "subscription-status": "status"}
    page.page.goto("https://flattr.com/thing/313733")
    assert page.attribute("#flattr-result", "role") == "status"
    page.page.click("#flattr")
    page.wait_for("document.getElementById('flattr-result').textContent !== ''")
    audit(page, axe, "thing page after flattr")


def german_copy(tmp_path: Path) -> Path:
    """The extension with only its German messages (default_locale de): this
    Chromium ships only the en-US UI locale, so the browser falls back to the
    extension's default locale, through the same chrome.i18n lookup a German user's
    browser makes."""
    copy = tmp_path / "extension-de"
    shutil.copytree(EXTENSION_DIR, copy)
    shutil.rmtree(copy / "_locales" / "en")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["default_locale"] = "de"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def test_popup_speaks_german_through_chrome_i18n(
    launch: LaunchFn, tmp_path: Path, axe: str
) -> None:
    browser = launch(extension=german_copy(tmp_path))
    popup = browser.popup_tab()
    wait_popup(popup, "!$('sign-in').hidden")
    shown = popup.evaluate(
        "({status: document.getElementById('host-status').textContent,"
        " signIn: document.getElementById('sign-in').textContent,"
        " flattr: document.getElementById('flattr-page').textContent,"
        " auth: document.getElementById('auth').textContent,"
        " paused: document.getElementById('queue-paused').textContent,"
        " footer: document.getElementById('versions').textContent,"
        " lang: document.documentElement.lang})"
    )
    assert shown["status"] == "Host verbunden"
    assert shown["signIn"] == "Anmelden" and shown["flattr"] == "Diese Seite flattrn"
    assert shown["auth"] == "Abgemeldet" and shown["paused"] == "ja: abgemeldet"
    assert shown["footer"].startswith("Erweiterung ")
    audit(popup, axe, "German popup")
    popup.screenshot("popup-de.png", selector="body")
