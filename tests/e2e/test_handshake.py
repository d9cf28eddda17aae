"""The handshake started by the page (document 000): trigger, authenticate with the
right build, id and version, token, authenticated true. The token ends up in the
host's encrypted store and nowhere in the browser profile or the host's logs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.e2e import (
    BUILD_ID,
    EXTENSION_ID,
    GECKO_ID,
    MANIFEST_VERSION,
    ROOT,
    BrowserDriver,
    ExtensionBrowser,
    FirefoxBrowser,
    Host,
    LaunchFn,
    Site,
    log_in,
    page_handshake,
    profile_bytes,
)

pytestmark = pytest.mark.browsers("chromium", "firefox")


def test_page_started_handshake(browser: BrowserDriver, host: Host, site: Site) -> None:
    """In Firefox this also shows the page can read every detail the content script
    sends (no Xray "Permission denied"): the recorder reads them in the page world,
    and the site's own script posts the flattr-authenticate detail to mint the token."""
    own_id = EXTENSION_ID if browser.name == "chromium" else GECKO_ID
    site.create_user("carol", active=True)
    page, token = page_handshake(browser, "carol")

    # Page: the whole conversation, in order, with the documented detail shapes.
    seen = [(e["type"], e["detail"]) for e in page.events()]
    assert seen == [
        ("flattr-installed", None),
        ("flattr-trigger", {"action": "authentication"}),
        (
            "flattr-authenticate",
            {"build": BUILD_ID, "id": own_id, "version": MANIFEST_VERSION},
        ),
        ("flattr-token", {"accessToken": token, "subscription": {"active": True}}),
        ("flattr-authenticated", {"authenticated": True}),
    ]
    page.wait_for_selector("#handshake-status[data-state='authenticated']")

    # Fake site: the token was minted for this extension id and build.
    (minted,) = site.journal(server="site", method="POST", path="/oauth/ext/token")
    assert json.loads(minted["body"]) == {
        "id": own_id,
        "build": BUILD_ID,
        "version": MANIFEST_VERSION,
    }
    assert site.journal(server="api") == []

    # Host: signed in with the page's subscription; the token is stored encrypted.
    state = host.status()
    assert state["authenticated"] is True
    assert state["subscription"] == {"active": True}
    assert host.requests().count("set-token") == 1
    # The worker relays the page's detail as it is (docs/protocol.md, set-token).
    (relayed,) = [line["message"] for line in host.log_lines()
                  if line.get("msg") == "frame in" and line["message"].get("type") == "set-token"]
    assert set(relayed) == {"id", "type", "detail"}
    assert relayed["detail"] == {"accessToken": "[redacted]", "subscription": {"active": True}}
    secret = token.encode()
    assert host.home.is_dir()
    assert secret not in host.files_bytes(), "token in clear text in the host's data directory"

    # Browser: no trace of the token in the profile (Chromium: once it has flushed
    # it on close; the shared Firefox: what it has written so far).
    if isinstance(browser, ExtensionBrowser):
        browser.close()
        assert secret not in profile_bytes(browser.profile)
    else:
        assert isinstance(browser, FirefoxBrowser)
        assert secret not in profile_bytes(browser.firefox.profile)


@pytest.mark.browsers("chromium")  # a second copy of the add-on: Chromium's launch factory
def test_packaged_build_reports_its_build_id(
    launch: LaunchFn, host: Host, site: Site, tmp_path: Path
) -> None:
    """The packaging step's build id is what flattr.com receives."""
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "extension" / "package.py"),
            "--out",
            str(tmp_path / "dist"),
            "--build-id",
            "e2e-build.7",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    built = json.loads(done.stdout)
    browser = launch(extension=Path(built["unpacked"]))
    site.create_user("dave", active=False)
    page, _token = page_handshake(browser, "dave")

    assert page.events("flattr-authenticate")[-1]["detail"] == {
        "build": "e2e-build.7",
        "id": EXTENSION_ID,
        "version": MANIFEST_VERSION,
    }
    (minted,) = site.journal(server="site", method="POST", path="/oauth/ext/token")
    assert json.loads(minted["body"])["build"] == "e2e-build.7"
    state = host.status()
    assert state["authenticated"] is True
    assert state["subscription"] == {"active": False}
    hello = [
        line["message"]
        for line in host.log_lines()
        if line.get("msg") == "frame in" and line["message"].get("type") == "hello"
    ]
    assert hello and hello[0]["extension"]["build"] == "e2e-build.7"


LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


@pytest.mark.browsers("chromium")  # the retry is the extension's, the same in both
def test_token_handed_over_while_another_process_holds_the_store(
        browser: BrowserDriver, host: Host, site: Site) -> None:
    """The host answers set-token `busy` (nothing stored) while another process holds
    the store's write lock; the extension sends it again and the page is signed in."""
    site.create_user("erin", active=True)
    assert browser.open("https://flattr.com/").url  # the worker is up, the host too
    login = browser.open("https://flattr.com/login?next=/")
    log_in(login, "erin")
    login.wait_for_url("https://flattr.com/")
    # Held longer than the host's wait (store_wait_s, 2 s), shorter than 3 retries.
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(host.home / "host.db"), "3"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout is not None
        assert locker.stdout.readline().strip() == "locked"
        page = browser.open("https://flattr.com/oauth/ext")
        answer = page.wait_event("flattr-authenticated")
        assert answer["detail"] == {"authenticated": True}, answer
    finally:
        locker.wait(30)
    assert host.status()["authenticated"] is True
    busy = [line for line in host.log_lines()
            if line.get("msg") == "request refused" and line.get("code") == "busy"]
    assert busy, "the lock was not met: the test did not exercise the retry"
