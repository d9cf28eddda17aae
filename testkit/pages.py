"""Tabs a test drives, the same in Chromium and Firefox, and the DOM protocol on them.

:class:`FlattrPage` is browser-neutral: every helper (dispatch a ``flattr-*`` event
with a detail, wait for the extension's events, read ``sessionStorage.extension``,
wait for a selector or a console warning) is built on :meth:`FlattrPage.evaluate`
and :meth:`FlattrPage.wait_for`, which :class:`ChromiumPage` (Playwright) and
:class:`FirefoxPage` (WebDriver BiDi) provide. Every page records the ``flattr-*``
events its documents see (:data:`RECORDER_JS`, injected before any page script).
Screenshots go to the page's ``artifacts`` folder (Firefox's prefixed ``firefox-``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flattr_testing.bidi import BidiError

if TYPE_CHECKING:
    from flattr_testing.browsers import FirefoxBrowser

# Timeout for anything the browser should do promptly (milliseconds).
WAIT_MS = 15_000
#: the names of the DOM protocol's events (docs/protocol.md)
EVENT_NAMES = ("flattr-installed", "flattr-uninstalled", "flattr-trigger",
               "flattr-authenticate", "flattr-token", "flattr-authenticated",
               "flattr-subscription")
DEFAULT_ARTIFACTS = Path("test-artifacts")

# Records every flattr-* event on the page's document, in the page's own world,
# before any page script runs (Playwright init scripts and BiDi preload scripts run
# first in every frame).
RECORDER_JS = """
(() => {
  const names = __NAMES__;
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
""".replace("__NAMES__", json.dumps(list(EVENT_NAMES)))

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



class FlattrPage:
    """A tab, with the flattr-* events its document saw. Browser-neutral: every
    method is built on :meth:`evaluate` and :meth:`wait_for`, which drivers provide."""

    browser_name = ""

    def __init__(self, artifacts: Path = DEFAULT_ARTIFACTS) -> None:
        self.console: list[tuple[str, str]] = []
        #: where :meth:`screenshot` writes
        self.artifacts = artifacts

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

    def __init__(self, page: Any, artifacts: Path = DEFAULT_ARTIFACTS) -> None:
        super().__init__(artifacts)
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
        """Save a PNG to the artifacts folder (of one element when ``selector`` is given)."""
        path = self.artifacts / name
        path.parent.mkdir(parents=True, exist_ok=True)
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

    def __init__(self, browser: FirefoxBrowser, context: str,
                 artifacts: Path = DEFAULT_ARTIFACTS) -> None:
        super().__init__(artifacts)
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
        named = Path(name)
        path = self.artifacts / named.parent / f"firefox-{named.name}"
        path.parent.mkdir(parents=True, exist_ok=True)
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



def page_handshake(browser: Any, username: str) -> tuple[FlattrPage, str]:
    """Sign in the page way on the fake flattr.com: log in as ``username`` (password =
    username), open /oauth/ext, and let the page start the handshake.

    ``browser`` is a :class:`~flattr_testing.browsers.BrowserDriver`. Returns the page
    and the token the page handed over (from its ``flattr-token`` event).
    """
    page: FlattrPage = browser.open("https://flattr.com/login?next=/oauth/ext")
    log_in(page, username)
    page.wait_for_url("https://flattr.com/oauth/ext")
    answer = page.wait_event("flattr-authenticated")
    assert answer["detail"] == {"authenticated": True}, answer
    token = str(page.events("flattr-token")[-1]["detail"]["accessToken"])
    return page, token
