"""Handshake: page trigger to ``flattr-authenticated``, host warm, real Chromium.

Chromium (/usr/bin/chromium, new headless) runs the unpacked extension from
``extension/`` in a fresh persistent profile whose ``NativeMessagingHosts`` holds
the manifest ``flattr-host install --browser chromium --user-data-dir`` wrote, so
the browser spawns the host itself (HOME, FLATTR_HOST_HOME: temporary folders).
A page at ``https://flattr.com/oauth/ext`` is served by Playwright's router (no
network at all), so the page is a stand-in for the sign-in page's own script:
it dispatches ``flattr-trigger``, answers ``flattr-authenticate`` with
``flattr-token`` at once, and times, with ``performance.now()``, until
``flattr-authenticated`` arrives. What is measured is the extension and the host:
page -> content script -> service worker -> host ``set-token`` (durable commit)
-> back. The first handshake (which starts the host) is untimed: host warm.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

from harness.context import Context
from harness.model import BenchError, FigureResult, NotAvailable, Row, Summary
from harness.spawn import ROOT, host_env, installed_command, require_host

KEY = "handshake"
TITLE = "handshake (page trigger to flattr-authenticated)"
UNIT = "ms"
TARGET = "median reported; <= 50 ms"
LIMIT_MS = 50.0
CHROMIUM = "/usr/bin/chromium"
EXTENSION = ROOT / "extension"
PAGE_URL = "https://flattr.com/oauth/ext"
PAGE = "<!doctype html><meta charset=utf-8><title>bench sign-in stand-in</title><p>bench"

# Runs in the page: one handshake as document 000 describes it, timed in the page.
HANDSHAKE_JS = """
async (token) => {
  const t0 = performance.now();
  const answered = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no flattr-authenticated in 10 s")), 10000);
    document.addEventListener("flattr-authenticate", () => {
      document.dispatchEvent(new CustomEvent("flattr-token",
        {detail: {accessToken: token, subscription: {active: true}}}));
    }, {once: true});
    document.addEventListener("flattr-authenticated", (event) => {
      clearTimeout(timer);
      resolve(event.detail);
    }, {once: true});
  });
  document.dispatchEvent(new CustomEvent("flattr-trigger", {detail: {action: "authentication"}}));
  const detail = await answered;
  return {ms: performance.now() - t0, detail};
}
"""


def require_browser_parts() -> None:
    """Raise NotAvailable unless Chromium, Playwright and the extension are here."""
    require_host()
    if not Path(CHROMIUM).is_file() and shutil.which("chromium") is None:
        raise NotAvailable(f"no Chromium at {CHROMIUM} (make chromium)")
    if importlib.util.find_spec("playwright") is None:
        raise NotAvailable("playwright is not installed (pip install -e '.[test]')")
    if not (EXTENSION / "background.js").is_file() or not (EXTENSION / "content").is_dir():
        raise NotAvailable("extension not landed: no background.js / content/")


def one_handshake(page: Any, token: str) -> float:
    """Milliseconds for one handshake in ``page``; raises unless authenticated."""
    outcome = page.evaluate(HANDSHAKE_JS, token)
    if not isinstance(outcome, dict) or outcome.get("detail", {}).get("authenticated") is not True:
        raise BenchError(f"handshake did not authenticate: {outcome!r}")
    return float(outcome["ms"])


def run(ctx: Context, result: FigureResult) -> None:
    """Fill ``result`` with handshake times in real Chromium (see module docstring)."""
    require_browser_parts()
    from playwright.sync_api import sync_playwright

    user_data = ctx.ws.fresh("chromium-profile")
    command, why = installed_command(ctx.ws, user_data)
    if command is None:
        raise NotAvailable(f"the browser needs the installed host manifest: {why}")
    home = ctx.ws.fresh("handshake-home")
    host_home = ctx.ws.fresh("handshake-host")
    env = host_env(host_home, {"HOME": str(home)})
    samples: list[float] = []
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(user_data),
            executable_path=CHROMIUM,
            headless=True,
            env=env,
            args=[f"--disable-extensions-except={EXTENSION}", f"--load-extension={EXTENSION}"],
        )
        try:
            context.route(
                "https://flattr.com/**",
                lambda route: route.fulfill(status=200, content_type="text/html", body=PAGE),
            )
            page = context.new_page()
            page.goto(PAGE_URL)
            page.wait_for_function("sessionStorage.getItem('extension') !== null",
                                   timeout=ctx.cfg.timeout_s * 1000)
            one_handshake(page, "bench-warm-up-token")  # starts the host: not timed
            for i in range(ctx.cfg.handshake_rounds):
                samples.append(one_handshake(page, f"bench-token-{i:04d}"))
        finally:
            context.close()
    if not (host_home / "host.db").is_file():  # proof that Chromium ran our host
        raise BenchError(f"Chromium authenticated, but no host store appeared in {host_home}")
    result.rows.append(Row("extension + host", Summary.of(samples), "candidate"))
    result.notes.append(f"host spawned by Chromium through {command.argv[0]}")
    result.met = Summary.of(samples).median <= LIMIT_MS
