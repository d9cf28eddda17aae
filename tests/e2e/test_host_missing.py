"""Host missing or broken: the popup says so and shows the command that fixes it; the
page's handshake is answered with authenticated false; the worker has no uncaught
errors; nothing reaches the API."""

from __future__ import annotations

from tests.support.e2e import (
    Host,
    LaunchFn,
    Site,
    log_in,
    wait_popup,
)


def test_host_not_installed(launch: LaunchFn, host: Host, site: Site) -> None:
    browser = launch(install_host=False)
    assert not (browser.profile / "NativeMessagingHosts" / "com.flattr.companion.json").exists()
    popup = browser.popup_tab()
    wait_popup(popup, "$('host-status').dataset.phase === 'missing'")
    assert popup.page.is_visible("#host-problem")
    fix = popup.page.text_content("#host-fix") or ""
    # Plain "Chromium" brands: Vivaldi (and others) look the same, so the fix covers
    # every browser flattr-host finds (test_fix_command_names_the_browser_by_its_brand).
    assert fix.splitlines() == [
        "flattr-host install --browser all", "flattr-host doctor --browser all"]
    assert "not installed" in (popup.page.text_content("#host-problem-text") or "")
    # How to get flattr-host at all.
    assert popup.page.is_visible("#host-get")
    assert popup.page.text_content("#host-get-command") == "pipx install flattr-companion"
    assert popup.page.is_disabled("#flattr-page")
    assert popup.page.is_hidden("#sign-in")
    popup.screenshot("popup-host-missing.png", selector="body")

    # The page's handshake: identified, but storing the token fails visibly.
    site.create_user("nina", active=True)
    page = browser.open("https://flattr.com/login?next=/oauth/ext")
    log_in(page, "nina")
    page.page.wait_for_url("https://flattr.com/oauth/ext")
    assert page.wait_event("flattr-authenticated")["detail"] == {"authenticated": False}
    page.page.wait_for_selector("#handshake-status[data-state='failed']")

    # Reopening the popup retries at once and still explains the problem.
    again = browser.popup_tab()
    wait_popup(again, "$('host-status').dataset.phase === 'missing'")
    assert browser.worker_status()["phase"] == "missing"
    assert browser.worker_errors() == []
    assert not host.home.exists(), "no host ran, so no data directory"
    assert site.journal(server="api") == []


def test_host_refusing_the_extension_is_broken(launch: LaunchFn, host: Host, site: Site) -> None:
    """A host that exits at once (here: this extension id is not allowed) is 'broken'."""
    env = {**host.env, "FLATTR_ALLOWED_EXTENSIONS": "abcdefghijklmnopabcdefghijklmnop"}
    browser = launch(env=env)
    popup = browser.popup_tab()
    wait_popup(popup, "$('host-status').dataset.phase === 'broken'")
    assert "flattr-host doctor" in (popup.page.text_content("#host-fix") or "")
    assert "stopped" in (popup.page.text_content("#host-problem-text") or "")
    page = browser.open("https://flattr.com/")
    page.wait_event("flattr-installed")
    assert browser.worker_errors() == []
    refusals = [line for line in host.log_lines() if line.get("level") in ("warning", "error")]
    assert refusals, "the host logged why it refused"
    assert "hello" not in host.requests()
    assert site.journal(server="api") == []


def test_fix_command_names_the_browser_by_its_brand(launch: LaunchFn, host: Host) -> None:
    """navigator.userAgentData.brands names Google Chrome, Edge or Brave: the fix
    command installs for that browser (its manifest folder differs from Chromium's).
    The brands are set with CDP's user-agent override, as those browsers report them."""
    browser = launch(install_host=False)
    popup = browser.popup_tab()
    cdp = browser.context.new_cdp_session(popup.page)
    for brand, name in [("Google Chrome", "chrome"), ("Microsoft Edge", "edge"),
                        ("Brave", "brave"), ("Chromium", "all")]:
        cdp.send("Emulation.setUserAgentOverride", {
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64)",
            "userAgentMetadata": {
                "brands": [{"brand": "Not A(Brand", "version": "99"},
                           {"brand": "Chromium", "version": "130"},
                           *([{"brand": brand, "version": "130"}] if brand != "Chromium" else [])],
                "platform": "Linux", "platformVersion": "", "architecture": "x86",
                "model": "", "mobile": False,
            },
        })
        popup.page.reload()
        wait_popup(popup, f"$('host-fix').dataset.browser === {name!r}")
        assert (popup.page.text_content("#host-fix") or "").splitlines() == [
            f"flattr-host install --browser {name}", f"flattr-host doctor --browser {name}"]
