"""Browsers with an extension loaded, the same interface in Chromium and Firefox.

- :class:`ExtensionBrowser`: one Chromium (Playwright ``launch_persistent_context`` on
  the system's Chromium) with the extension loaded unpacked; started by
  :func:`launch_chromium`.
- :class:`FirefoxBrowser`: a running firefox-esr (``launch_firefox``, WebDriver BiDi)
  set up for one test: the extension freshly installed as a temporary add-on;
  ``close()`` removes what the test added.
- :class:`ActionPopup`: Chromium's real toolbar popup, opened with
  ``Extensions.triggerAction`` and driven over a raw DevTools target session.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flattr_testing.bidi import BidiCommandError, BidiError, Route
from flattr_testing.extension import Extension
from flattr_testing.firefox import Firefox
from flattr_testing.pages import (
    DEFAULT_ARTIFACTS,
    NO_LIVE_PUSH_JS,
    RECORDER_JS,
    WAIT_MS,
    ChromiumPage,
    FirefoxPage,
    FlattrPage,
    wait_popup,
)


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
        self.browser.artifacts.mkdir(parents=True, exist_ok=True)
        path = self.browser.artifacts / name
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
    extension: Extension = field(default_factory=Extension.load)
    artifacts: Path = DEFAULT_ARTIFACTS
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
            if worker.url.startswith(self.extension.chromium_origin):
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
        page = ChromiumPage(self.context.new_page(), self.artifacts)
        self._pages.append(page)
        page.page.goto(url)
        return page

    def wrap(self, page: Any) -> ChromiumPage:
        wrapped = ChromiumPage(page, self.artifacts)
        self._pages.append(wrapped)
        return wrapped

    def route(self, url: str, body: str) -> None:
        def fulfill(route: Any) -> None:
            route.fulfill(status=200, content_type="text/html; charset=utf-8", body=body)

        self.context.route(url, fulfill)

    def open_routed(self, url: str, body: str) -> ChromiumPage:
        self.route(url, body)
        return self.open(url)

    @property
    def popup_url(self) -> str:
        return self.extension.chromium_url(self.extension.popup_path or "popup/popup.html")

    @property
    def pages(self) -> list[FlattrPage]:
        """The tabs this driver opened or wrapped (some may be closed)."""
        return list(self._pages)

    def popup_tab(self) -> ChromiumPage:
        popup = self.open(self.popup_url)
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
                f"chrome.management.setEnabled('{self.extension.chromium_id}',"
                f" {str(enabled).lower()})"
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
            "Extensions.triggerAction",
            {"id": self.extension.chromium_id, "targetId": matching[0]["targetId"]},
        )
        deadline = time.monotonic() + WAIT_MS / 1000
        while True:
            fresh = [
                t
                for t in cdp.send("Target.getTargets")["targetInfos"]
                if t["targetId"] not in before and t["url"] == self.popup_url
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
        with contextlib.suppress(Exception):  # already gone: nothing left to close
            self.context.close()


class FirefoxBrowser(BrowserDriver):
    """The module's Firefox, set up for one test: the extension freshly installed
    (temporary add-on), the test's host registered. :meth:`close` removes what the
    test added (tabs, routes, preload scripts, cookies, the add-on)."""

    name = "firefox"

    def __init__(self, firefox: Firefox, extension: Extension | Path | None = None,
                 artifacts: Path = DEFAULT_ARTIFACTS) -> None:
        self.firefox = firefox
        self.bidi = firefox.bidi
        self.extension = (extension if isinstance(extension, Extension)
                          else Extension.load(extension))
        self.artifacts = artifacts
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
        return (self.firefox.extension_base_url(self.addon)
                + (self.extension.popup_path or "popup/popup.html"))

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
        page = FirefoxPage(self, self._new_tab(), self.artifacts)
        self.pages.append(page)
        self.bidi.navigate(page.context, url)
        return page

    def _new_tab(self) -> str:
        """A new tab's context. Firefox opens it in the window focused last; when that
        window is closing (a page's login popup that closed itself) the command fails
        with "no such frame" until the window is gone: then it is asked again."""
        deadline = time.monotonic() + WAIT_MS / 1000
        while True:
            try:
                return self.bidi.create_context()
            except BidiCommandError as error:
                if error.error != "no such frame" or time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

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
            self.addon = self.firefox.install_extension(self.extension.path)
            wanted = self.extension.gecko_id
            assert wanted is None or self.addon == wanted, (self.addon, wanted)

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



def resolver_rules(site: str, api: str, files: str | None = None) -> str:
    """Chromium's ``--host-resolver-rules``: flattr.com, api. and (given) files.flattr.com."""
    site_port = urlsplit(site).port
    api_port = urlsplit(api).port
    rules = f"MAP flattr.com 127.0.0.1:{site_port}, MAP api.flattr.com 127.0.0.1:{api_port}"
    if files:
        rules += f", MAP files.flattr.com 127.0.0.1:{urlsplit(files).port}"
    return rules



def launch_chromium(
    playwright: Any,
    profile: Path,
    *,
    extension: Extension,
    env: dict[str, str],
    site: str,
    api: str,
    spki: str,
    executable: str,
    headless: bool = True,
    extra_args: Sequence[str] = (),
    artifacts: Path = DEFAULT_ARTIFACTS,
    files: str | None = None,
) -> ExtensionBrowser:
    """Start Chromium on ``profile`` with ``extension`` loaded unpacked.

    ``https://flattr.com``, ``https://api.flattr.com`` and (given ``files``)
    ``https://files.flattr.com`` resolve to the fake site (``--host-resolver-rules``);
    their leaf is accepted by its SPKI pin (``spki``), nothing else is. ``env`` is
    the browser's environment, inherited by the native host it starts.
    ``extra_args`` come last, so they win (a test may replace the resolver rules).
    The flattr-* event recorder runs in every frame and reports to
    :attr:`ExtensionBrowser.seen`; worker errors are recorded.
    """
    context = playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=executable,
        headless=headless,
        env=env,
        viewport={"width": 900, "height": 700},
        args=[
            f"--disable-extensions-except={extension.path}",
            f"--load-extension={extension.path}",
            f"--host-resolver-rules={resolver_rules(site, api, files)}",
            f"--ignore-certificate-errors-spki-list={spki}",
            # Allows Extensions.triggerAction (the toolbar click) over the CDP pipe.
            "--enable-unsafe-extension-debugging",
            *extra_args,
        ],
    )
    try:
        context.set_default_timeout(WAIT_MS)
        browser = ExtensionBrowser(context, profile, env, extension, artifacts)

        def report(source: dict[str, Any], name: str, detail: Any) -> None:
            browser.seen.append({"type": name, "detail": detail, "url": source["frame"].url})

        context.expose_binding("__flattrReport", report)
        context.add_init_script(RECORDER_JS)
        background = extension.manifest.get("background")
        if isinstance(background, dict) and background.get("service_worker"):
            browser.record_worker_errors()
    except BaseException:
        with contextlib.suppress(Exception):
            context.close()
        raise
    return browser


def screenshot_open_pages(browser: BrowserDriver, prefix: str) -> list[Path]:
    """Best-effort PNG of every tab the driver still has open (for failure reports)."""
    shots: list[Path] = []
    pages: list[FlattrPage] = list(getattr(browser, "pages", []) or [])
    for index, page in enumerate(pages):
        if isinstance(page, ChromiumPage) and page.page.is_closed():
            continue
        with contextlib.suppress(Exception):
            shots.append(page.screenshot(f"{prefix}-tab{index}.png"))
    return shots
