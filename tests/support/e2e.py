"""What this repository's end-to-end tests share beyond the test kit's fixtures.

The drivers, pages and clients come from the installed test kit (flattr_testing);
this module adds the facts about our own extension the tests assert on and a few
helpers only this suite uses. The extension is the one the kit loads by default
(``FLATTR_EXTENSION`` / ``FLATTR_E2E_EXTENSION`` or extension/).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flattr_testing.browsers import (
    ARTICLE,
    ActionPopup,
    BrowserDriver,
    ExtensionBrowser,
    FirefoxBrowser,
    resolver_rules,
)
from flattr_testing.extension import Extension
from flattr_testing.fake_site import BULK_PATH, FakeSite
from flattr_testing.host import Host, host_env
from flattr_testing.pages import (
    NO_LIVE_PUSH_JS,
    RECORDER_JS,
    WAIT_MS,
    ChromiumPage,
    FirefoxFrame,
    FirefoxPage,
    FlattrPage,
    log_in,
    page_handshake,
    wait_popup,
)
from flattr_testing.plugin import BROWSERS, DEFAULT_CHROMIUM, browser_skip_reason

__all__ = [
    "ARTICLE",
    "ARTIFACTS",
    "BROWSERS",
    "BUILD_ID",
    "BULK_PATH",
    "CHROMIUM",
    "EXTENSION",
    "EXTENSION_DIR",
    "EXTENSION_ID",
    "GECKO_ID",
    "MANIFEST_VERSION",
    "NO_LIVE_PUSH_JS",
    "POPUP_URL",
    "RECORDER_JS",
    "ROOT",
    "WAIT_MS",
    "ActionPopup",
    "BrowserDriver",
    "ChromiumPage",
    "ExtensionBrowser",
    "FirefoxBrowser",
    "FirefoxFrame",
    "FirefoxPage",
    "FlattrPage",
    "Host",
    "LaunchFn",
    "Site",
    "browser_skip_reason",
    "bulk_urls",
    "host_env",
    "log_in",
    "page_handshake",
    "profile_bytes",
    "resolver_rules",
    "routed_page",
    "wait_popup",
]

ROOT = Path(__file__).resolve().parents[2]
#: the default artifacts folder (``--flattr-artifacts`` changes the plugin's)
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("FLATTR_CHROMIUM", DEFAULT_CHROMIUM)
EXTENSION = Extension.load()
EXTENSION_DIR = EXTENSION.path
EXTENSION_ID = EXTENSION.chromium_id
GECKO_ID = EXTENSION.gecko_id or ""
MANIFEST_VERSION = EXTENSION.version
BUILD_ID = EXTENSION.build_id or ""
POPUP_URL = EXTENSION.chromium_url("popup/popup.html")

#: the fake site's client under the name the scenario tests use
Site = FakeSite
LaunchFn = Callable[..., ExtensionBrowser]


def bulk_urls(site: FakeSite, token: str | None = None) -> list[str]:
    """URLs sent in bulk POSTs (optionally only those with ``Bearer token``)."""
    return site.bulk_urls(token)


def routed_page(browser: BrowserDriver, url: str, body: str) -> FlattrPage:
    """Open ``url`` served by the test itself (for origins the fake site is not)."""
    return browser.open_routed(url, body)


def profile_bytes(profile: Path) -> bytes:
    """Every file the browser wrote under the profile, concatenated (for leak checks)."""
    chunks = []
    for path in profile.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                chunks.append(path.read_bytes())
            except OSError:
                continue
    return b"".join(chunks)


ATTENTION_PERMISSIONS = ["tabs", "idle", "scripting"]


def grant_attention_before(profile: Path) -> None:
    """Start ``profile`` as Chrome leaves it after the user accepted the attention
    permissions once (``runtime_granted_permissions``, kept after the extension
    releases them). The popup's ``permissions.request`` then grants them through
    Chrome's own code without showing the dialog again: headless Chromium cannot show
    or accept that dialog (``tabs`` carries the "Read your browsing history" warning;
    ``idle`` and ``scripting`` have none and are granted without one anyway). The
    permissions stay inactive until the popup requests them."""
    prefs_path = profile / "Default" / "Preferences"
    prefs_path.parent.mkdir(parents=True, exist_ok=True)
    prefs: dict[str, Any] = json.loads(prefs_path.read_text()) if prefs_path.exists() else {}
    settings = prefs.setdefault("extensions", {}).setdefault("settings", {})
    settings.setdefault(EXTENSION_ID, {})["runtime_granted_permissions"] = {
        "api": ATTENTION_PERMISSIONS, "explicit_host": [], "manifest_permissions": [],
        "scriptable_host": [],
    }
    prefs_path.write_text(json.dumps(prefs))
