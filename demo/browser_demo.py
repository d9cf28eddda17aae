#!/usr/bin/env python3
"""The whole story in a real browser, headless (headed when DISPLAY is set).

1. starts the fake flattr.com / api.flattr.com (``python -m fake_flattr --seed``);
2. installs the real host into a temporary Chromium profile (``flattr-host install``)
   and launches /usr/bin/chromium with the unchanged extension;
3. signs in through the popup: "Sign in" opens https://flattr.com/oauth/ext, the
   demo logs in as the seeded user ``alice``, the handshake runs, the tab closes;
4. flattrs two pages with the toolbar popup's "Flattr this page";
5. shows the fake API receiving them, the host's log lines and its final status;
6. saves screenshots to test-artifacts/ and removes everything it started.

``--browser firefox`` tells the same story in firefox-esr, driven over WebDriver
BiDi (flattr_testing, docs/firefox.md): the host is installed with ``--browser
firefox --home DIR``, https://flattr.com is reached through a loopback CONNECT proxy
with the fake CA trusted in the profile, "Sign in" is clicked in the popup page
opened in a tab, and "Flattr this page" is the popup's own runtime message (BiDi
cannot click the toolbar button).

Usage: ``python demo/browser_demo.py [--browser chromium|firefox] [--chromium PATH]
[--keep]``. Exit status 0 when both pages reached the API, 1 otherwise.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flattr_testing.fake_site import BULK_PATH, FakeSite, FakeSiteError

ROOT = Path(__file__).resolve().parents[1]
GECKO_ID = "companion@flattr-companion.example"
EXTENSION = ROOT / "extension"
ARTIFACTS = ROOT / "test-artifacts"
PAGES = [
    ("https://blog.example/2024/why-flattr", "Why I flattr"),
    ("https://podcast.example/episode/42", "Episode 42"),
]


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def serve(title: str) -> Any:
    """A Playwright route handler answering with a small article page."""
    html = f"<!doctype html><title>{title}</title><h1>{title}</h1><p>Worth a flattr.</p>"

    def handler(route: Any) -> None:
        route.fulfill(status=200, content_type="text/html", body=html)

    return handler


def host_cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "flattr_host", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout + done.stderr


def host_log_lines(home: Path) -> list[str]:
    lines: list[str] = []
    for path in sorted((home / "logs").glob("*.log*")):
        lines.extend(path.read_text(errors="replace").splitlines())
    return lines


def show_delivery(site: FakeSite) -> bool:
    """Print the bulk POSTs until both demo pages arrived; True when they did."""
    wanted = {url for url, _ in PAGES}
    received: set[str] = set()
    count = 1
    while not wanted <= received:
        try:
            entries = site.wait_for(count, server="api", method="POST", path=BULK_PATH,
                                    timeout=30)
        except FakeSiteError:
            break
        for entry in entries[count - 1 :]:
            auth = {k.lower(): v for k, v in entry["headers"].items()}.get("authorization", "")
            body = json.loads(entry["body"])
            received.update(item["url"] for item in body)
            shown = f"{auth[:13]}..."  # enough to see it is the Bearer token
            print(f"POST {entry['path']}  Authorization: {shown}  body: {json.dumps(body)}")
        count += 1
    if not wanted <= received:
        print(f"missing: {wanted - received}")
    return wanted <= received


def clean_up(site: FakeSite, temp: Path, keep: bool) -> None:
    """Stop the fake site and remove (or keep, and say where) the demo's folder."""
    site.stop()
    if keep:
        print(f"kept {temp}")
    else:
        shutil.rmtree(temp, ignore_errors=True)


def finish(site: FakeSite, env: dict[str, str], home: Path, ok: bool) -> int:
    say("the host's log (JSON lines in FLATTR_HOST_HOME/logs)")
    for line in host_log_lines(home)[-25:]:
        print(line)
    say("final status (flattr-host status)")
    print(host_cli(env, "status").strip())
    shots = sorted(p.name for p in ARTIFACTS.glob("demo-*.png"))
    say(f"screenshots in {ARTIFACTS.relative_to(ROOT)}/: " + ", ".join(shots))
    print("\nRESULT:", "both pages reached the API" if ok else "some pages did not arrive")
    return 0 if ok else 1


def run_firefox(keep: bool) -> int:
    """The same story in firefox-esr over WebDriver BiDi."""
    sys.path.insert(0, str(ROOT))
    from flattr_testing.bidi import Route
    from flattr_testing.connect_proxy import ConnectProxy, flattr_map
    from flattr_testing.firefox import firefox_skip_reason, launch_firefox

    reason = firefox_skip_reason()
    if reason is not None:
        print(f"browser_demo: {reason}", file=sys.stderr)
        return 1
    ARTIFACTS.mkdir(exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix="flattr-demo-ff-"))
    home, user_home = temp / "host", temp / "home"
    user_home.mkdir()
    say("starting the fake flattr.com and api.flattr.com")
    site = FakeSite(seed=True).start()
    print(f"site {site.site}  api {site.api}")
    try:
        env = {
            **os.environ,
            "FLATTR_HOST_HOME": str(home),
            "FLATTR_API_BASE": site.api,
            "FLATTR_CA_BUNDLE": site.ca,
            "FLATTR_SUBMIT_DELAY_S": "0.5",
            "FLATTR_LOG_LEVEL": "info",
        }
        say("installing the host for Firefox (HOME is a temporary folder)")
        print(host_cli(env, "install", "--browser", "firefox", "--home", str(user_home)).strip())
        mapping = flattr_map(urlsplit(site.site).port or 443, urlsplit(site.api).port or 443)
        say("launching firefox-esr headless; https://flattr.com through a loopback proxy")
        with (
            ConnectProxy(mapping) as proxy,
            launch_firefox(
                temp / "firefox", proxy_port=proxy.port, home=user_home,
                trusted_ca_pem=Path(site.ca).read_bytes(), system_access=True,
            ) as firefox,
        ):
            bidi = firefox.bidi
            addon = firefox.install_extension(EXTENSION)
            print(f"temporary add-on {addon} installed")
            popup_url = firefox.extension_base_url(addon) + "popup/popup.html"
            bidi.route([Route(url, f"<!doctype html><title>{t}</title><h1>{t}</h1>")
                        for url, t in PAGES])

            def wait(context: str, condition: str) -> None:
                deadline = time.monotonic() + 15
                while not bidi.evaluate(f"Boolean({condition})", context):
                    if time.monotonic() > deadline:
                        raise TimeoutError(condition)
                    time.sleep(0.05)

            def shoot(context: str, name: str) -> None:
                data = bidi.send("browsingContext.captureScreenshot", {"context": context})
                (ARTIFACTS / name).write_bytes(base64.b64decode(data["data"]))

            say("signing in: the popup's 'Sign in' button (popup page in a tab)")
            popup = bidi.create_context()
            bidi.navigate(popup, popup_url)
            wait(popup, "document.getElementById('host-status').dataset.phase === 'ready'")
            shoot(popup, "demo-firefox-popup-signed-out.png")
            before = {c["context"] for c in bidi.get_tree(0)}
            bidi.evaluate("document.getElementById('sign-in').click()", popup)
            deadline = time.monotonic() + 15
            while not (opened := [c for c in bidi.get_tree(0) if c["context"] not in before]):
                if time.monotonic() > deadline:
                    raise TimeoutError("the sign-in tab did not open")
                time.sleep(0.05)
            tab = str(opened[0]["context"])
            wait(tab, "document.querySelector('#login-form')")
            for field_id in ("username", "password"):
                bidi.evaluate(f"document.getElementById('{field_id}').value = 'alice'", tab)
            bidi.evaluate("document.getElementById('login-button').click()", tab)
            deadline = time.monotonic() + 15
            while tab in {c["context"] for c in bidi.get_tree(0)}:
                if time.monotonic() > deadline:
                    raise TimeoutError("the sign-in tab did not close")
                time.sleep(0.05)
            print("logged in as alice; the handshake ran and the sign-in tab closed itself")

            say("flattring two pages: the popup's 'Flattr this page' message")
            popup = bidi.create_context()
            bidi.navigate(popup, popup_url)
            wait(popup, "!document.getElementById('flattr-page').disabled")
            for url, _title in PAGES:
                bidi.navigate(bidi.create_context(), url)
                reply = bidi.evaluate(
                    f"chrome.runtime.sendMessage({{type: 'popup-flattr', url: {json.dumps(url)}}})",
                    popup,
                )
                print(f"{url}: queued {reply.get('result', {}).get('queued')}")
            say("the fake API receives them")
            ok = show_delivery(site)
            wait(popup, "document.getElementById('queue-pending').textContent === '0'")
            shoot(popup, "demo-firefox-popup-flattred.png")
        return finish(site, env, home, ok)
    finally:
        clean_up(site, temp, keep)


def run(chromium: str, keep: bool) -> int:
    from playwright.sync_api import sync_playwright

    from flattr_testing.browsers import launch_chromium
    from flattr_testing.extension import Extension

    ARTIFACTS.mkdir(exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix="flattr-demo-"))
    profile, home = temp / "profile", temp / "host"
    (temp / "home").mkdir()
    say("starting the fake flattr.com and api.flattr.com")
    site = FakeSite(seed=True).start()
    print(f"site {site.site}  api {site.api}")
    try:
        env = {
            **os.environ,
            "HOME": str(temp / "home"),
            "FLATTR_HOST_HOME": str(home),
            "FLATTR_API_BASE": site.api,
            "FLATTR_CA_BUNDLE": site.ca,
            "FLATTR_SUBMIT_DELAY_S": "0.5",
            "FLATTR_LOG_LEVEL": "info",
        }
        say("installing the host into a temporary Chromium profile")
        print(
            host_cli(
                env, "install", "--browser", "chromium", "--user-data-dir", str(profile)
            ).strip()
        )

        headed = bool(os.environ.get("DISPLAY"))
        say(f"launching {chromium} ({'headed' if headed else 'headless'}) with the extension")
        with sync_playwright() as pw:
            # The test kit's launcher: the fake site reached as https://flattr.com.
            browser = launch_chromium(
                pw, profile, extension=Extension.load(EXTENSION), env=env, site=site.site,
                api=site.api, spki=site.spki, executable=chromium, headless=not headed,
                artifacts=ARTIFACTS,
            )
            context = browser.context
            for url, title in PAGES:  # two ordinary pages to flattr, served by the demo
                context.route(url, serve(title))
            start = browser.wrap(context.pages[0]) if context.pages else browser.open("about:blank")

            say("signing in through the popup")
            popup = browser.action_popup(start)
            popup.wait_for("document.getElementById('host-status').dataset.phase === 'ready'")
            popup.screenshot("demo-popup-signed-out.png")
            with context.expect_page() as opened:
                popup.click("sign-in")
            tab = opened.value
            tab.wait_for_selector("#login-form")
            tab.screenshot(path=str(ARTIFACTS / "demo-sign-in-page.png"))
            tab.fill("#username", "alice")
            tab.fill("#password", "alice")
            tab.click("#login-button")
            if not tab.is_closed():
                tab.wait_for_event("close")
            print("logged in as alice; the handshake ran and the sign-in tab closed itself")

            say("flattring two pages with 'Flattr this page'")
            for url, _title in PAGES:
                popup = browser.action_popup(browser.open(url))
                popup.wait_for("!document.getElementById('flattr-page').disabled")
                popup.click("flattr-page")
                popup.wait_for("document.getElementById('flattr-page').dataset.done === 'true'")
                print(f"{url}: {popup.text('message')}")
            popup.screenshot("demo-popup-flattred.png")

            say("the fake API receives them")
            ok = show_delivery(site)
            browser.close()
        return finish(site, env, home, ok)
    finally:
        clean_up(site, temp, keep)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--chromium", default=os.environ.get("FLATTR_CHROMIUM", "/usr/bin/chromium")
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary profile and data")
    parser.add_argument("--browser", choices=["chromium", "firefox"], default="chromium")
    args = parser.parse_args()
    if args.browser == "firefox":
        return run_firefox(args.keep)
    if not os.access(args.chromium, os.X_OK):
        print(
            f"browser_demo: {args.chromium} not found; install it with `make chromium`",
            file=sys.stderr,
        )
        return 1
    return run(args.chromium, args.keep)


if __name__ == "__main__":
    sys.exit(main())
