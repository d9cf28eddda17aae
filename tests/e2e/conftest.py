"""Fixtures for the end-to-end suite: real browsers, the real extension, the real host.

One set of scenario tests runs in Chromium and in Firefox. A test asks for
``browser`` and gets a :class:`BrowserDriver`; the ``e2e_browser`` parameter
("chromium" or "firefox") comes from the ``browsers`` marker (default: Chromium
only, for the scenarios that need Chromium's toolbar click or extension switches):

    pytestmark = pytest.mark.browsers("chromium", "firefox")

- **Chromium**: a fresh profile per test (``launch_persistent_context``, ~0.4 s) with
  the unchanged extension loaded from ``extension/`` (or a packaged copy), ``HOME``
  pointed at a temporary folder, ``https://flattr.com`` / ``https://api.flattr.com`` /
  ``https://files.flattr.com`` mapped to the fake site with ``--host-resolver-rules``
  (leaf accepted by SPKI pin),
  the host installed into ``<profile>/NativeMessagingHosts``.
- **Firefox**: one ``firefox-esr`` per test module (launch ~2 s), driven over
  WebDriver BiDi (tests/support/bidi.py, docs/firefox.md); ``https://flattr.com``
  (and its api. and files. hosts) reached through a loopback CONNECT proxy with the
  fake CA imported into the profile. Each test gets its own host data directory
  (``flattr-host install --browser firefox --home DIR`` rewrites the launcher), a
  fresh temporary install of the extension (so a fresh background and host
  process), no cookies, and only its own tabs, routes and preload scripts; all are
  removed at teardown.
- The real host with its own ``FLATTR_HOST_HOME`` and API settings that reach the
  fake API quickly (backoff near zero; timing is injected, never slept).
- The session's fake site (``fake_site`` from tests/conftest.py), reset per test.

A browser that cannot be found is skipped with the reason, which is also printed in
the report header. Screenshots go to ``test-artifacts/`` (Firefox's prefixed
``firefox-``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from tests.support.bidi import BidiError, Route
from tests.support.connect_proxy import ConnectProxy, flattr_map
from tests.support.firefox import (
    Firefox,
    find_firefox,
    firefox_skip_reason,
    firefox_version,
    launch_firefox,
    native_messaging_dir,
)

ROOT = Path(__file__).resolve().parents[2]
# FLATTR_E2E_EXTENSION: run the suite against another copy (a packaged build, or a
# deliberately broken one to see the suite fail).
EXTENSION_DIR = Path(os.environ.get("FLATTR_E2E_EXTENSION", ROOT / "extension")).resolve()
EXTENSION_ID = "jimjcpbicodoomdmhndojmkjllmolafb"
GECKO_ID = "companion@flattr-companion.example"
CHROMIUM = os.environ.get("FLATTR_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
MANIFEST_VERSION = json.loads((EXTENSION_DIR / "manifest.json").read_text())["version"]
BUILD_ID = re.search(r'FLATTR_BUILD = "([^"]*)"', (EXTENSION_DIR / "build.js").read_text())[1]
POPUP_URL = f"chrome-extension://{EXTENSION_ID}/popup/popup.html"
BROWSERS = ("chromium", "firefox")
# Timeout for anything the browser should do promptly (milliseconds).
WAIT_MS = 15_000

# Records every flattr-* event on the page's document, in the page's own world,
# before any page script runs (Playwright init scripts and BiDi preload scripts run
# first in every frame).
RECORDER_JS = """
(() => {
  const names = ["flattr-installed", "flattr-uninstalled", "flattr-trigger",
    "flattr-authenticate", "flattr-token", "flattr-authenticated", "flattr-subscription"];
  const log = [];
  Object.defineProperty(window, "__flattrEvents", { value: log });
  for (const name of names) {
    document.addEventListener(name, (event) => {
      let detail;
      try { detail = JSON.parse(JSON.stringify(event.detail === undefined ? null : event.detail)); }
      catch (error) { detail = "<unserializable>"; }
      log.push({ type: name, detail });
      // Also to the test process, so events of tabs that closed are not lost.
      if (typeof window.__flattrReport === "function") window.__flattrReport(name, detail);
    }, true);
  }
})();
"""

# Firefox: the live-push socket of the fake site (wss://127.0.0.1:PORT/push?ticket=)
# goes to a closed port instead, so the page sees it close, as Chromium's
# route_web_socket(... ws.close()) does.
NO_LIVE_PUSH_JS = """() => {
  const Native = window.WebSocket;
  const Blocked = function (url, protocols) {
    const blocked = String(url).includes("ticket=");
    return new Native(blocked ? "wss://127.0.0.1:9/blocked" : url, protocols);
  };
  Blocked.prototype = Native.prototype;
  window.WebSocket = Blocked;
}"""


# ---------------------------------------------------------------------------------
# Which browsers run, and why not
# ---------------------------------------------------------------------------------


def browser_skip_reason(name: str) -> str | None:
    """Why ``name`` cannot run here (None when it can)."""
    if name == "chromium":
        if not os.access(CHROMIUM, os.X_OK):
            return f"Chromium not found: {CHROMIUM} is not installed (make chromium)"
        return None
    return firefox_skip_reason()


def browser_version(name: str) -> str:
    """e.g. "Chromium 156.0.8078.79" / "Mozilla Firefox 153.7.0esr" ("" if unknown)."""
    exe = CHROMIUM if name == "chromium" else find_firefox()
    if exe is None or browser_skip_reason(name):
        return ""
    try:
        done = subprocess.run(
            [exe, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return lines[-1].split(" built on ")[0].strip() if lines else ""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "browsers(*names): run the test in these browsers (chromium, firefox)"
    )


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say up front which browsers run and why one is skipped (never silently)."""
    lines: list[str] = []
    for name in BROWSERS:
        reason = browser_skip_reason(name)
        if name == "firefox" and reason is None:
            exe = find_firefox()
            version = firefox_version(exe) if exe else ""
        else:
            version = browser_version(name)
        status = version if reason is None else f"SKIPPED: {reason}"
        lines.append(f"e2e {name}: {status}")
    return lines


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``e2e_browser`` from the closest ``browsers`` marker."""
    if "e2e_browser" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("browsers")
    names = marker.args if marker is not None else ("chromium",)
    unknown = set(names) - set(BROWSERS)
    assert not unknown, f"unknown browsers {sorted(unknown)}; known: {BROWSERS}"
    metafunc.parametrize("e2e_browser", names)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark this suite's browser tests e2e; skip those of a missing browser, with the
    reason. Other browser tests in this folder keep their own rules."""
    for item in items:
        if not {"launch", "browser", "e2e_browser"} & set(getattr(item, "fixturenames", ())):
            continue
        item.add_marker(pytest.mark.e2e)
        callspec = getattr(item, "callspec", None)
        name = callspec.params.get("e2e_browser", "chromium") if callspec else "chromium"
        reason = browser_skip_reason(name)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))
            _SKIPPED_BROWSERS[name] = reason


_SKIPPED_BROWSERS: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print why a browser's tests were skipped, even under -q (never silently)."""
    for name, reason in sorted(_SKIPPED_BROWSERS.items()):
        terminalreporter.write_line(f"e2e: {name} tests SKIPPED: {reason}", yellow=True)


# ---------------------------------------------------------------------------------
# Pages
# ---------------------------------------------------------------------------------


class FlattrPage:
    """A tab, with the flattr-* events its document saw. Browser-neutral: every
    method is built on :meth:`evaluate` and :meth:`wait_for`, which drivers provide."""

    browser_name = ""

    def __init__(self) -> None:
        self.console: list[tuple[str, str]] = []

    # -- provided by each browser --

    @property
    def url(self) -> str:
        raise NotImplementedError

    def evaluate(self, expression: str, frame: Any = None) -> Any:
        """Evaluate a JS expression in the page's own world (promises awaited);
        return its JSON value."""
        raise NotImplementedError

    def wait_for(self, js_condition: str, timeout: int = WAIT_MS) -> None:
        """Wait until the JS expression is truthy (across navigations)."""
        raise NotImplementedError

    def click(self, selector: str) -> None:
        raise NotImplementedError

    def fill(self, selector: str, value: str) -> None:
        raise NotImplementedError

    def frames(self) -> list[Any]:
        """Child frames (handles for ``frame=``); each has a ``url``."""
        raise NotImplementedError

    def warnings(self) -> list[str]:
        """flattr-companion console warnings the page has logged so far."""
        raise NotImplementedError

    def screenshot(self, name: str, selector: str | None = None) -> Path:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # -- the same everywhere --

    def events(self, name: str | None = None, frame: Any = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.evaluate("window.__flattrEvents || []", frame) or []
        return [e for e in found if name is None or e["type"] == name]

    def wait_event(self, name: str, count: int = 1, timeout: int = WAIT_MS) -> dict[str, Any]:
        """Wait until ``name`` has been seen ``count`` times; return the last one."""
        self.wait_for(
            f"(window.__flattrEvents || []).filter((e) => e.type === {json.dumps(name)})"
            f".length >= {count}",
            timeout,
        )
        return self.events(name)[-1]

    def dispatch(self, name: str, detail_js: str = "null", frame: Any = None) -> None:
        """Dispatch a CustomEvent from the page's world; ``detail_js`` is a JS expression."""
        event = f"new CustomEvent({json.dumps(name)}, {{ detail: ({detail_js}) }})"
        self.evaluate(f"void document.dispatchEvent({event})", frame)

    def session_extension(self) -> str | None:
        value: str | None = self.evaluate("sessionStorage.getItem('extension')")
        return value

    def wait_for_selector(self, selector: str, timeout: int = WAIT_MS) -> None:
        self.wait_for(f"document.querySelector({json.dumps(selector)}) !== null", timeout)

    def wait_for_url(self, url: str, timeout: int = WAIT_MS) -> None:
        self.wait_for(
            f"location.href === {json.dumps(url)} && document.readyState !== 'loading'", timeout
        )

    def text(self, selector: str) -> str:
        value = self.evaluate(f"document.querySelector({json.dumps(selector)}).textContent")
        return str(value)

    def attribute(self, selector: str, name: str) -> str | None:
        value = self.evaluate(
            f"document.querySelector({json.dumps(selector)}).getAttribute({json.dumps(name)})"
        )
        return None if value is None else str(value)

    def wait_warning(self, words: str, timeout: int = WAIT_MS) -> None:
        """Wait for a flattr-companion console warning containing ``words``."""
        deadline = time.monotonic() + timeout / 1000
        while not any(words in text for text in self.warnings()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no warning with {words!r} within {timeout} ms")
            time.sleep(0.05)


class ChromiumPage(FlattrPage):
    """A Playwright page; ``.page`` stays available to Chromium-only tests."""

    browser_name = "chromium"

    def __init__(self, page: Any) -> None:
        super().__init__()
        self.page = page
        page.on("console", lambda message: self.console.append((message.type, message.text)))

    @property
    def url(self) -> str:
        return str(self.page.url)

    def evaluate(self, expression: str, frame: Any = None) -> Any:
        return (frame or self.page).evaluate(expression)

    def wait_for(self, js_condition: str, timeout: int = WAIT_MS) -> None:
        self.page.wait_for_function(f"() => {js_condition}", timeout=timeout)

    def click(self, selector: str) -> None:
        self.page.click(selector)

    def fill(self, selector: str, value: str) -> None:
        self.page.fill(selector, value)

    def frames(self) -> list[Any]:
        return [f for f in self.page.frames if f != self.page.main_frame]

    def wait_for_url(self, url: str, timeout: int = WAIT_MS) -> None:
        self.page.wait_for_url(url, timeout=timeout)

    def warnings(self) -> list[str]:
        return [
            text for kind, text in self.console if kind == "warning" and "flattr-companion" in text
        ]

    def wait_warning(self, words: str, timeout: int = WAIT_MS) -> None:
        """Console messages are delivered asynchronously; in the sync API they are only
        dispatched while a Playwright call runs, so checking the list first and then
        waiting for the event cannot miss one."""
        if any(words in text for text in self.warnings()):
            return
        self.page.wait_for_event(
            "console",
            predicate=lambda message: "flattr-companion" in message.text and words in message.text,
            timeout=timeout,
        )

    def screenshot(self, name: str, selector: str | None = None) -> Path:
        """Save a PNG to test-artifacts/ (of one element when ``selector`` is given)."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        if selector:
            self.page.locator(selector).screenshot(path=str(path))
        else:
            self.page.screenshot(path=str(path))
        return path

    def close(self) -> None:
        self.page.close()


@dataclass(frozen=True)
class FirefoxFrame:
    """A child browsing context of a Firefox tab."""

    context: str
    url: str


class FirefoxPage(FlattrPage):
    """A Firefox tab (a BiDi browsing context)."""

    browser_name = "firefox"

    def __init__(self, browser: FirefoxBrowser, context: str) -> None:
        super().__init__()
        self.browser = browser
        self.context = context

    @property
    def url(self) -> str:
        return str(self.evaluate("location.href"))

    def evaluate(self, expression: str, frame: Any = None) -> Any:
        target = frame.context if isinstance(frame, FirefoxFrame) else self.context
        return self.browser.bidi.evaluate(expression, target)

    def wait_for(self, js_condition: str, timeout: int = WAIT_MS) -> None:
        # Polled from here: a promise inside the page would die with a navigation.
        deadline = time.monotonic() + timeout / 1000
        last: Exception | None = None
        while True:
            try:
                if self.evaluate(f"Boolean({js_condition})"):
                    return
            except BidiError as error:  # the document is being replaced: try again
                last = error
            if time.monotonic() > deadline:
                raise TimeoutError(f"{js_condition} not true within {timeout} ms ({last})")
            time.sleep(0.03)

    def click(self, selector: str) -> None:
        self.wait_for_selector(selector)
        self.browser.bidi.evaluate(
            f"void document.querySelector({json.dumps(selector)}).click()",
            self.context,
            user_activation=True,
        )

    def fill(self, selector: str, value: str) -> None:
        self.wait_for_selector(selector)
        self.evaluate(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
            f" el.value = {json.dumps(value)};"
            " el.dispatchEvent(new Event('input', {bubbles: true})); })()"
        )

    def frames(self) -> list[Any]:
        tree = self.browser.bidi.send(
            "browsingContext.getTree", {"root": self.context, "maxDepth": 1}
        )["contexts"]
        children = tree[0].get("children") or [] if tree else []
        return [FirefoxFrame(str(c["context"]), str(c["url"])) for c in children]

    def warnings(self) -> list[str]:
        return [
            text
            for context, level, text in self.browser.console()
            if context == self.context and level == "warn" and "flattr-companion" in text
        ]

    def screenshot(self, name: str, selector: str | None = None) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"firefox-{name}"
        params: dict[str, Any] = {"context": self.context}
        if selector:
            element = self.browser.bidi.evaluate(
                f"document.querySelector({json.dumps(selector)})", self.context
            )
            params["clip"] = {"type": "element", "element": {"sharedId": element.shared_id}}
        data = self.browser.bidi.send("browsingContext.captureScreenshot", params)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        with contextlib.suppress(BidiError):
            self.browser.bidi.close_context(self.context)


def log_in(page: FlattrPage, username: str) -> None:
    """Fill the fake flattr.com login form (seeded and admin-made passwords = username)."""
    page.wait_for_selector("#login-form")
    page.fill("#username", username)
    page.fill("#password", username)
    page.click("#login-button")


def wait_popup(popup: FlattrPage, js_condition: str) -> None:
    """Wait until ``js_condition`` holds in a popup tab (it re-renders on host events)."""
    popup.wait_for(
        f"(() => {{ const $ = (id) => document.getElementById(id); return {js_condition}; }})()"
    )


# ---------------------------------------------------------------------------------
# Browsers
# ---------------------------------------------------------------------------------


class BrowserDriver:
    """What a scenario test may do with a browser, the same in Chromium and Firefox."""

    name = ""

    def open(self, url: str) -> FlattrPage:
        """A new tab at ``url`` (loaded)."""
        raise NotImplementedError

    def open_routed(self, url: str, body: str) -> FlattrPage:
        """Open ``url`` served by the test itself (origins the fake site is not)."""
        raise NotImplementedError

    def route(self, url: str, body: str) -> None:
        """Serve ``body`` (HTML) for requests to exactly ``url`` from now on."""
        raise NotImplementedError

    def popup_tab(self) -> FlattrPage:
        """The popup page opened in a tab: same code, same background port."""
        raise NotImplementedError

    def flattr_this_page(self, url: str) -> None:
        """"Flattr this page" for a tab showing ``url``, as close to a user's toolbar
        click as the browser's automation allows (see each driver)."""
        raise NotImplementedError

    def block_live_push(self) -> None:
        """Pages opened from now on get no live push from the fake site."""
        raise NotImplementedError

    def remove_extension(self) -> None:
        """Disable (Chromium) / remove (Firefox) the extension, as a user can."""
        raise NotImplementedError

    def restore_extension(self) -> None:
        """Undo :meth:`remove_extension`."""
        raise NotImplementedError

    def background_errors(self) -> list[str] | None:
        """Uncaught errors in the background (None where it cannot be observed)."""
        return None

    def close(self) -> None:
        raise NotImplementedError


class ActionPopup:
    """The real toolbar popup, opened by ``Extensions.triggerAction`` (CDP).

    Triggering the action is what a click on the toolbar button does, including the
    ``activeTab`` grant for the tab. Playwright does not expose the popup as a Page,
    so it is driven over a raw CDP target session (``Target.sendMessageToTarget``).
    """

    def __init__(self, browser: ExtensionBrowser, target_id: str) -> None:
        self.browser = browser
        self.cdp = browser.browser_cdp()
        self._replies: dict[int, dict[str, Any]] = {}
        self._next = 0
        self.cdp.on("Target.receivedMessageFromTarget", self._on_message)
        self.session = self.cdp.send(
            "Target.attachToTarget", {"targetId": target_id, "flatten": False}
        )["sessionId"]

    def _on_message(self, event: dict[str, Any]) -> None:
        if event.get("sessionId") != self.session:
            return
        message = json.loads(event["message"])
        if "id" in message:
            self._replies[message["id"]] = message

    def call(self, method: str, params: dict[str, Any], timeout: float = WAIT_MS / 1000) -> Any:
        self._next += 1
        call_id = self._next
        self.cdp.send(
            "Target.sendMessageToTarget",
            {
                "sessionId": self.session,
                "message": json.dumps({"id": call_id, "method": method, "params": params}),
            },
        )
        deadline = time.monotonic() + timeout
        while call_id not in self._replies:
            if time.monotonic() > deadline:
                raise TimeoutError(f"popup did not answer {method} within {timeout} s")
            self.browser.pump()  # lets Playwright deliver the CDP event
        reply = self._replies.pop(call_id)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def evaluate(self, expression: str, user_gesture: bool = False) -> Any:
        """Evaluate in the popup (promises awaited) and return the JSON value;
        ``user_gesture`` runs it as part of a user's click (what
        ``permissions.request`` requires)."""
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True,
             "userGesture": user_gesture},
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"popup script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, js_condition: str, timeout_ms: int = WAIT_MS) -> None:
        ok = self.evaluate(
            f"""new Promise((resolve) => {{
                const deadline = Date.now() + {timeout_ms};
                const check = () => {{
                    let ok = false;
                    try {{ ok = Boolean({js_condition}); }} catch (e) {{}}
                    if (ok || Date.now() > deadline) resolve(ok); else setTimeout(check, 20);
                }};
                check();
            }})"""
        )
        if not ok:
            raise TimeoutError(f"popup: {js_condition} not true within {timeout_ms} ms")

    def click(self, element_id: str) -> None:
        """A user's click (with user activation) on the element with ``element_id``."""
        self.evaluate(f"document.getElementById({json.dumps(element_id)}).click()",
                      user_gesture=True)

    def text(self, element_id: str) -> str:
        value: str = self.evaluate(f"document.getElementById({json.dumps(element_id)}).textContent")
        return value

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        # The whole popup document, also what lies below the headless popup's viewport.
        size = self.call("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        data = self.call("Page.captureScreenshot",
                         {"format": "png", "captureBeyondViewport": True, "clip": clip})["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.evaluate("window.close()")
        except (RuntimeError, TimeoutError):
            pass


ARTICLE = "<!doctype html><title>An article</title><h1>Worth it</h1>"


@dataclass(eq=False)
class ExtensionBrowser(BrowserDriver):
    """One running Chromium with the extension; ``close()`` is idempotent."""

    context: Any
    profile: Path
    env: dict[str, str]
    name: str = "chromium"
    _cdp: Any = None
    _pages: list[FlattrPage] = field(default_factory=list)
    closed: bool = False
    #: every flattr-* event any frame saw: {"type", "detail", "url"}, closed tabs included
    seen: list[dict[str, Any]] = field(default_factory=list)

    def seen_events(self, name: str, url_prefix: str = "") -> list[dict[str, Any]]:
        return [e for e in self.seen if e["type"] == name and e["url"].startswith(url_prefix)]

    @property
    def worker(self) -> Any:
        for worker in self.context.service_workers:
            if worker.url.startswith(f"chrome-extension://{EXTENSION_ID}/"):
                return worker
        return self.context.wait_for_event("serviceworker", timeout=WAIT_MS)

    def browser_cdp(self) -> Any:
        if self._cdp is None:
            self._cdp = self.context.browser.new_browser_cdp_session()
        return self._cdp

    def pump(self) -> None:
        """Give Playwright's event loop a turn (sync API delivers events while waiting)."""
        self.context.pages[0].wait_for_timeout(10) if self.context.pages else time.sleep(0.01)

    def open(self, url: str) -> ChromiumPage:
        page = ChromiumPage(self.context.new_page())
        self._pages.append(page)
        page.page.goto(url)
        return page

    def wrap(self, page: Any) -> ChromiumPage:
        wrapped = ChromiumPage(page)
        self._pages.append(wrapped)
        return wrapped

    def route(self, url: str, body: str) -> None:
        def fulfill(route: Any) -> None:
            route.fulfill(status=200, content_type="text/html; charset=utf-8", body=body)

        self.context.route(url, fulfill)

    def open_routed(self, url: str, body: str) -> ChromiumPage:
        self.route(url, body)
        return self.open(url)

    def popup_tab(self) -> ChromiumPage:
        popup = self.open(POPUP_URL)
        popup.page.wait_for_selector("#host-status:not([data-phase='connecting'])", timeout=WAIT_MS)
        return popup

    def flattr_this_page(self, url: str) -> None:
        """The real toolbar click on a tab showing ``url`` (it grants activeTab), then
        the popup's own "Flattr this page" button."""
        popup = self.action_popup(self.open_routed(url, ARTICLE))
        popup.wait_for("!document.getElementById('flattr-page').disabled")
        popup.click("flattr-page")
        popup.wait_for("document.getElementById('flattr-page').dataset.done === 'true'")
        assert popup.text("message") == "Queued this page for flattring."
        popup.screenshot("popup-flattr-this-page.png")
        popup.close()

    def block_live_push(self) -> None:
        self.context.route_web_socket(lambda url: "ticket=" in url, lambda ws: ws.close())

    def _set_enabled(self, enabled: bool) -> None:
        """What the switch on chrome://extensions does (chrome.management in that page)."""
        admin = self.context.new_page()
        try:
            admin.goto("chrome://extensions")
            admin.evaluate(
                f"chrome.management.setEnabled('{EXTENSION_ID}', {str(enabled).lower()})"
            )
        finally:
            admin.close()

    def remove_extension(self) -> None:
        self._set_enabled(False)

    def restore_extension(self) -> None:
        self._set_enabled(True)

    def action_popup(self, tab: FlattrPage) -> ActionPopup:
        """Click the toolbar button for ``tab`` and return the popup that opened."""
        assert isinstance(tab, ChromiumPage)
        tab.page.bring_to_front()
        cdp = self.browser_cdp()
        tabs = cdp.send("Target.getTargets", {"filter": [{"type": "tab"}]})["targetInfos"]
        matching = [t for t in tabs if t["url"] == tab.url]
        assert matching, f"no tab target for {tab.url}: {[t['url'] for t in tabs]}"
        before = {t["targetId"] for t in cdp.send("Target.getTargets")["targetInfos"]}
        cdp.send(
            "Extensions.triggerAction", {"id": EXTENSION_ID, "targetId": matching[0]["targetId"]}
        )
        deadline = time.monotonic() + WAIT_MS / 1000
        while True:
            fresh = [
                t
                for t in cdp.send("Target.getTargets")["targetInfos"]
                if t["targetId"] not in before and t["url"] == POPUP_URL
            ]
            if fresh:
                return ActionPopup(self, fresh[0]["targetId"])
            if time.monotonic() > deadline:
                raise TimeoutError("the action popup did not open")
            self.pump()

    def record_worker_errors(self) -> None:
        """From now on, collect uncaught errors and rejections in the worker."""
        self.worker.evaluate(
            """(() => {
                if (self.__flattrErrors) return;
                self.__flattrErrors = [];
                self.addEventListener("error", (e) => self.__flattrErrors.push(String(e.message)));
                self.addEventListener("unhandledrejection", (e) =>
                    self.__flattrErrors.push(String(e.reason && e.reason.stack || e.reason)));
            })()"""
        )

    def worker_errors(self) -> list[str]:
        errors: list[str] = self.worker.evaluate("self.__flattrErrors || []")
        return errors

    def background_errors(self) -> list[str] | None:
        return self.worker_errors()

    def worker_status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.worker.evaluate("JSON.parse(JSON.stringify(link.status))")
        return status

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.context.close()
        except Exception:
            pass


class FirefoxBrowser(BrowserDriver):
    """The module's Firefox, set up for one test: the extension freshly installed
    (temporary add-on), the test's host registered. :meth:`close` removes what the
    test added (tabs, routes, preload scripts, cookies, the add-on)."""

    name = "firefox"

    def __init__(self, firefox: Firefox, extension: Path = EXTENSION_DIR) -> None:
        self.firefox = firefox
        self.bidi = firefox.bidi
        self.extension = extension
        self.pages: list[FirefoxPage] = []
        self.routes: list[str] = []
        self.preloads: list[str] = []
        self._console: list[tuple[str, str, str]] = []
        self.bidi.drain_events("log.entryAdded")
        self.addon: str | None = None
        self.restore_extension()

    @property
    def popup_url(self) -> str:
        assert self.addon is not None, "the extension is not installed"
        return self.firefox.extension_base_url(self.addon) + "popup/popup.html"

    def console(self) -> list[tuple[str, str, str]]:
        """(context, level, text) of console entries so far (BiDi log.entryAdded:
        content-script messages included)."""
        for event in self.bidi.drain_events("log.entryAdded"):
            source = event.params.get("source") or {}
            self._console.append(
                (
                    str(source.get("context")),
                    str(event.params.get("level")),
                    str(event.params.get("text")),
                )
            )
        return list(self._console)

    def open(self, url: str) -> FirefoxPage:
        page = FirefoxPage(self, self.bidi.create_context())
        self.pages.append(page)
        self.bidi.navigate(page.context, url)
        return page

    def route(self, url: str, body: str) -> None:
        # network.provideResponse: answered inside Firefox, no network traffic.
        self.routes.append(self.bidi.route([Route(url, body)]))

    def open_routed(self, url: str, body: str) -> FirefoxPage:
        self.route(url, body)
        return self.open(url)

    def popup_tab(self) -> FirefoxPage:
        popup = self.open(self.popup_url)
        popup.wait_for_selector("#host-status:not([data-phase='connecting'])")
        return popup

    def flattr_this_page(self, url: str) -> None:
        """The user opens ``url`` and asks the popup to flattr it.

        BiDi can neither click the toolbar button nor reach the popup panel, and a
        popup opened in a tab would ask ``tabs.query`` for its own tab. So the
        popup page, opened in a tab, sends exactly the runtime message its "Flattr
        this page" button sends for the active tab's URL; the background then checks
        the sender (the popup page) and relays ``flattr`` to the host as usual."""
        self.open_routed(url, ARTICLE)
        popup = self.popup_tab()
        wait_popup(popup, "!$('flattr-page').disabled")
        reply = popup.evaluate(
            f"chrome.runtime.sendMessage({{type: 'popup-flattr', url: {json.dumps(url)}}})"
        )
        assert reply["ok"] is True and reply["result"]["queued"] == 1, reply

    def block_live_push(self) -> None:
        self.preloads.append(self.bidi.add_preload_script(NO_LIVE_PUSH_JS))

    def remove_extension(self) -> None:
        """webExtension.uninstall: what "Remove" in about:addons does to a temporary
        add-on (BiDi cannot drive the disable switch)."""
        if self.addon is not None:
            self.bidi.uninstall_extension(self.addon)
            self.addon = None

    def restore_extension(self) -> None:
        if self.addon is None:
            self.addon = self.firefox.install_extension(self.extension)
            assert self.addon == GECKO_ID, self.addon

    def close(self) -> None:
        for page in self.pages:
            page.close()
        for intercept in self.routes:
            with contextlib.suppress(BidiError):
                self.bidi.unroute(intercept)
        for script in self.preloads:
            with contextlib.suppress(BidiError):
                self.bidi.send("script.removePreloadScript", {"script": script})
        with contextlib.suppress(BidiError):
            self.bidi.send("storage.deleteCookies", {})
        with contextlib.suppress(BidiError):
            self.remove_extension()
        self.pages, self.routes, self.preloads = [], [], []


# ---------------------------------------------------------------------------------
# The host
# ---------------------------------------------------------------------------------


@dataclass
class Host:
    """The host's side of a test: its data directory and its CLI."""

    home: Path
    env: dict[str, str]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flattr_host", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def status(self) -> dict[str, Any]:
        done = self.cli("status", "--json")
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def install(self, profile: Path) -> Path:
        done = self.cli("install", "--browser", "chromium", "--user-data-dir", str(profile))
        assert done.returncode == 0, done.stderr
        manifest = profile / "NativeMessagingHosts" / "com.flattr.companion.json"
        assert manifest.is_file()
        return manifest

    def install_firefox(self, home: Path) -> Path:
        """``flattr-host install --browser firefox --home HOME``: the launcher pins this
        test's FLATTR_* settings, so a Firefox shared by tests starts this test's host."""
        done = self.cli("install", "--browser", "firefox", "--home", str(home))
        assert done.returncode == 0, done.stderr
        manifest = native_messaging_dir(home) / "com.flattr.companion.json"
        assert GECKO_ID in json.loads(manifest.read_text())["allowed_extensions"]
        return manifest

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for path in sorted((self.home / "logs").glob("*")):
            for raw in path.read_text(errors="replace").splitlines():
                try:
                    lines.append(json.loads(raw))
                except ValueError:
                    continue
        return lines

    def requests(self) -> list[str]:
        """Types of the frames the host received (its debug log logs every frame in)."""
        return [
            str(line["message"].get("type"))
            for line in self.log_lines()
            if line.get("msg") == "frame in" and isinstance(line.get("message"), dict)
        ]

    def files_bytes(self) -> bytes:
        return b"".join(p.read_bytes() for p in self.home.rglob("*") if p.is_file())


def host_env(base: Path, home: Path, api: str, ca: str) -> dict[str, str]:
    """Environment for the browser, inherited by the host it starts."""
    return {
        **os.environ,
        "HOME": str(base / "home"),
        "FLATTR_HOST_HOME": str(home),
        "FLATTR_API_BASE": api,
        "FLATTR_CA_BUNDLE": ca,
        "FLATTR_LOG_LEVEL": "debug",  # every frame logged: proves redaction too
        "FLATTR_RETRY_BASE_S": "0.05",
        "FLATTR_RETRY_CAP_S": "0.2",
        "FLATTR_SUBMIT_DELAY_S": "0.05",
        "FLATTR_LEASE_S": "5",
    }


def resolver_rules(site: str, api: str, files: str | None = None) -> str:
    site_port = urlsplit(site).port
    api_port = urlsplit(api).port
    rules = f"MAP flattr.com 127.0.0.1:{site_port}, MAP api.flattr.com 127.0.0.1:{api_port}"
    if files:
        rules += f", MAP files.flattr.com 127.0.0.1:{urlsplit(files).port}"
    return rules


# ---------------------------------------------------------------------------------
# The fake site, through its admin API (docs/fake-site.md)
# ---------------------------------------------------------------------------------


class Site:
    """The fake flattr.com / api.flattr.com of one test, driven by its admin API.

    Only the endpoints (``site``, ``api``, ``ca``, ``spki``) are taken from the
    session's ``fake_site``; everything else goes over HTTPS to ``/__admin/``, so the
    suite exercises the same interface any script would.
    """

    def __init__(self, endpoints: Any) -> None:
        def pick(name: str) -> str:
            value = getattr(endpoints, name, None)
            if value is None and isinstance(endpoints, dict):
                value = endpoints.get(name)
            assert isinstance(value, str | Path), f"fake_site has no {name!r}"
            return str(value)

        self.site, self.api, self.ca, self.spki = (pick(n) for n in ("site", "api", "ca", "spki"))
        self.files = pick("files")
        self._tls = ssl.create_default_context(cafile=self.ca)
        self._tls.check_hostname = False  # reached as 127.0.0.1; the CA is still checked

    def admin(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        query: dict[str, Any] | None = None,
        timeout: float = 70,
    ) -> Any:
        url = f"{self.api}/__admin/{path}"
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - https to the fake site only
            url, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, context=self._tls, timeout=timeout) as resp:  # noqa: S310 - https to the fake site
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as error:
            raise AssertionError(f"admin {method} {path}: {error.code} {error.read()!r}") from None

    def reset(self) -> None:
        self.admin("POST", "reset", {"seed": True})

    def create_user(self, username: str, active: bool = True) -> dict[str, Any]:
        """A fresh user (password = username) with the subscription ``active``."""
        created: dict[str, Any] = self.admin(
            "POST", "users", {"username": username, "subscription": {"active": active}}
        )
        return created

    def set_subscription(self, username: str, active: bool) -> dict[str, Any]:
        result: dict[str, Any] = self.admin(
            "POST", f"users/{username}/subscription", {"active": active}
        )
        return result

    def revoke(self, username: str) -> int:
        count: int = self.admin("POST", "tokens/revoke", {"username": username})["revoked"]
        return count

    def script(
        self, method: str, path: str, responses: list[dict[str, Any]], server: str = "api"
    ) -> None:
        self.admin(
            "POST",
            "script",
            {"method": method, "path": path, "responses": responses, "server": server},
        )

    def journal(
        self, *, server: str | None = None, method: str | None = None, path: str | None = None
    ) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.admin(
            "GET", "journal", query={"server": server, "method": method, "path": path}
        )["entries"]
        return entries

    def wait_for(
        self,
        count: int,
        *,
        server: str | None = None,
        method: str | None = None,
        path: str | None = None,
        timeout: float = WAIT_MS / 1000,
    ) -> list[dict[str, Any]]:
        """Block (server-side long poll) until ``count`` entries match; fail on timeout."""
        answer = self.admin(
            "GET",
            "journal/wait",
            query={
                "count": count,
                "timeout": timeout,
                "server": server,
                "method": method,
                "path": path,
            },
        )
        entries: list[dict[str, Any]] = answer["entries"]
        assert not answer["timed_out"], (
            f"only {len(entries)} of {count} {method} {path} requests within {timeout} s: {entries}"
        )
        return entries

    def user_flattr_urls(self, token: str) -> list[str]:
        """URLs of the things the token's user has flattred, from the REST API."""
        request = urllib.request.Request(  # noqa: S310 - https to the fake site only
            f"{self.api}/rest/v2/user/flattrs?count=100",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )
        with urllib.request.urlopen(request, context=self._tls, timeout=30) as resp:  # noqa: S310 - https to the fake site
            flattrs = json.loads(resp.read())
        return [str(f["thing"]["url"]) for f in flattrs]

    def bulk_posts(self) -> list[dict[str, Any]]:
        """The API's bulk flattr requests so far, bodies parsed."""
        posts = self.journal(server="api", method="POST", path=BULK_PATH)
        for post in posts:
            try:
                post["json"] = json.loads(post["body"])
            except ValueError:
                post["json"] = None
        return posts


BULK_PATH = "/rest/v2/flattr/bulk"


def bulk_urls(site: Site, token: str | None = None) -> list[str]:
    """URLs sent in bulk POSTs (optionally only those with ``Bearer token``)."""
    urls = []
    for post in site.bulk_posts():
        headers = {k.lower(): v for k, v in post["headers"].items()}
        if token is not None and headers.get("authorization") != f"Bearer {token}":
            continue
        for item in post["json"] or []:
            urls.append(item["url"])
    return urls


# ---------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def site_endpoints(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The session's fake site: tests/conftest.py's ``fake_site`` when it exists, else
    a ``flattr-fake-site --seed`` process of our own (stopped at the end)."""
    try:
        yield request.getfixturevalue("fake_site")
        return
    except pytest.FixtureLookupError:
        pass
    proc = subprocess.Popen(
        [sys.executable, "-m", "fake_flattr", "--seed"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, "flattr-fake-site printed nothing"
        yield json.loads(line)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def site(site_endpoints: Any) -> Site:
    """The session's fake site, reset to its seeded start-up state for this test."""
    wrapped = Site(site_endpoints)
    wrapped.reset()
    return wrapped


@pytest.fixture
def host(tmp_path: Path, site: Any) -> Host:
    home = tmp_path / "host"
    return Host(home, host_env(tmp_path, home, site.api, site.ca))


LaunchFn = Callable[..., ExtensionBrowser]

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


@pytest.fixture
def launch(playwright: Any, tmp_path: Path, site: Any, host: Host) -> Iterator[LaunchFn]:
    """Chromium factory: ``launch(profile=None, extension=EXTENSION_DIR, install_host=True,
    env=None, extra_args=())``.

    Starts Chromium with the extension; the host is installed into the profile first
    unless ``install_host`` is false. The same ``profile`` can be launched again after
    ``close()`` (browser restart). Everything launched is closed at teardown.
    """
    opened: list[ExtensionBrowser] = []
    (tmp_path / "home").mkdir(exist_ok=True)

    def start(
        profile: Path | None = None,
        extension: Path = EXTENSION_DIR,
        install_host: bool = True,
        env: dict[str, str] | None = None,
        extra_args: tuple[str, ...] = (),
        granted_before: bool = False,
    ) -> ExtensionBrowser:
        profile = profile or tmp_path / "profile"
        profile.mkdir(parents=True, exist_ok=True)
        if granted_before:
            grant_attention_before(profile)
        if install_host:
            host.install(profile)
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=not os.environ.get("FLATTR_E2E_HEADED"),
            env=env or host.env,
            viewport={"width": 900, "height": 700},
            args=[
                f"--disable-extensions-except={extension}",
                f"--load-extension={extension}",
                f"--host-resolver-rules={resolver_rules(site.site, site.api, site.files)}",
                f"--ignore-certificate-errors-spki-list={site.spki}",
                # Allows Extensions.triggerAction (the toolbar click) over the CDP pipe.
                "--enable-unsafe-extension-debugging",
                # Later switches win: a test may replace the resolver rules above.
                *extra_args,
            ],
        )
        context.set_default_timeout(WAIT_MS)
        browser = ExtensionBrowser(context, profile, env or host.env)

        def report(source: dict[str, Any], name: str, detail: Any) -> None:
            browser.seen.append({"type": name, "detail": detail, "url": source["frame"].url})

        context.expose_binding("__flattrReport", report)
        context.add_init_script(RECORDER_JS)
        opened.append(browser)
        browser.record_worker_errors()
        return browser

    yield start
    for browser in reversed(opened):
        browser.close()


@pytest.fixture(scope="module")
def firefox_session(
    tmp_path_factory: pytest.TempPathFactory, site_endpoints: Any
) -> Iterator[Firefox]:
    """One Firefox for the module: fake site through the CONNECT proxy, the fake CA
    trusted in the profile, the event recorder preloaded, console entries
    collected. ``--remote-allow-system-access`` lets tests open the popup page."""
    endpoints = Site(site_endpoints)
    base = tmp_path_factory.mktemp("firefox")
    mapping = flattr_map(
        urlsplit(endpoints.site).port or 443,
        urlsplit(endpoints.api).port or 443,
        urlsplit(endpoints.files).port or 443,
    )
    with (
        ConnectProxy(mapping) as proxy,
        launch_firefox(
            base,
            proxy_port=proxy.port,
            trusted_ca_pem=Path(endpoints.ca).read_bytes(),
            system_access=True,
            # Firefox's own switch for optional permissions: permissions.request()
            # grants without the doorhanger, which BiDi cannot click.
            prefs={"extensions.webextOptionalPermissionPrompts": False},
        ) as firefox,
    ):
        firefox.bidi.add_preload_script(f"() => {{ {RECORDER_JS} }}")
        firefox.bidi.subscribe(["log.entryAdded"])
        # Firefox's own background requests (remote settings, ...) reach the proxy
        # too and are refused there (proxy.refused): nothing leaves the machine.
        yield firefox


@pytest.fixture
def browser(request: pytest.FixtureRequest, e2e_browser: str, host: Host) -> Iterator[Any]:
    """A browser with the extension and the host installed (``e2e_browser``)."""
    if e2e_browser == "chromium":
        launch: LaunchFn = request.getfixturevalue("launch")
        yield launch()
        return
    firefox: Firefox = request.getfixturevalue("firefox_session")
    host.install_firefox(firefox.home)
    driver = FirefoxBrowser(firefox)
    try:
        yield driver
    finally:
        driver.close()


def page_handshake(browser: BrowserDriver, username: str) -> tuple[FlattrPage, str]:
    """Sign in the page way: log in, open /oauth/ext (the page starts the handshake).

    Returns the page and the token the page handed over (from its flattr-token event).
    """
    page = browser.open("https://flattr.com/login?next=/oauth/ext")
    log_in(page, username)
    page.wait_for_url("https://flattr.com/oauth/ext")
    answer = page.wait_event("flattr-authenticated")
    assert answer["detail"] == {"authenticated": True}, answer
    token = str(page.events("flattr-token")[-1]["detail"]["accessToken"])
    return page, token


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
