"""A web page in real Chromium cannot connect to the live inspector.

The page is served over http://127.0.0.1 and is even handed the port and the
secret; the browser still sends an ``Origin`` header on the WebSocket handshake,
and the inspector refuses it. A command-line client on the same machine (no
Origin, with the secret) connects, which shows the refusal is the Origin rule and
not a dead port.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from flattr_host.runtime import inspector
from flattr_testing.host import CHROMIUM_ID, install_launcher, running_host

CHROMIUM = "/usr/bin/chromium"

PAGE = b"""<!doctype html><title>hostile</title>
<script>
window.tryInspector = (port, secret) => new Promise((resolve) => {
  const events = [];
  let ws;
  try {
    ws = new WebSocket(`ws://127.0.0.1:${port}/?secret=${encodeURIComponent(secret)}`);
  } catch (e) { resolve(["threw " + e]); return; }
  ws.onopen = () => { events.push("open"); ws.send(JSON.stringify({id: 1, query: "state"})); };
  ws.onmessage = (m) => events.push("message " + m.data);
  ws.onerror = () => events.push("error");
  ws.onclose = (c) => { events.push("close " + c.code); resolve(events); };
  setTimeout(() => resolve(events.concat(["timeout"])), 5000);
});
</script>"""


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def page_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_a_web_page_cannot_connect_to_the_inspector(playwright: Any, tmp_path: Path,
                                                     page_url: str) -> None:
    home = tmp_path / "data"
    launcher = install_launcher(tmp_path / "profile", home)
    with running_host(launcher, home, env={"FLATTR_INSPECT": "1",
                                           "FLATTR_API_BASE": "http://127.0.0.1:9"}) as host:
        host.request("hello", extension={"id": CHROMIUM_ID, "version": "1", "build": "t"})
        discovery = home / "inspect" / f"{host.proc.pid}.json"
        deadline = time.monotonic() + 10
        while not discovery.exists():
            assert time.monotonic() < deadline, "inspector did not start"
            time.sleep(0.02)
        port = json.loads(discovery.read_text())["port"]
        secret = (home / inspector.SECRET_FILE).read_text().strip()

        browser_home = tmp_path / "browser-home"
        browser_home.mkdir()
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             env={"HOME": str(browser_home)})
        try:
            page = browser.new_page()
            page.goto(page_url)
            events = page.evaluate("([p, s]) => tryInspector(p, s)", [port, secret])
        finally:
            browser.close()
        assert "open" not in events and not [e for e in events if e.startswith("message")]
        assert any(e.startswith("close") for e in events), events

        log = (home / "logs" / "host.log").read_text()
        refusals = [json.loads(line) for line in log.splitlines()
                    if "refused a connection carrying an Origin header" in line]
        assert refusals and refusals[-1]["origin"] == page_url.rstrip("/")

        # The same port with the secret and no Origin works: the page was refused
        # for its Origin, not because nothing listened.
        with connect(f"ws://127.0.0.1:{port}/",
                     additional_headers={inspector.SECRET_HEADER: secret}) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "hello"
