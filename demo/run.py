#!/usr/bin/env python3
"""``make demo``: the main job against the simulated flattr.com.

- ``--browser chromium`` (default) or ``--browser firefox``: the whole story in a
  real headless browser with the real extension and host (demo/browser_demo.py).
- ``--browser none``: the same story without a browser: the real host process
  spoken to over stdio as a browser would, delivering to the fake API over HTTPS.
  Useful where no browser can be installed.

Exit status 0 when the flattrs reached the fake API.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAGES = ["https://blog.example/2024/why-flattr", "https://podcast.example/episodes/42"]


def host_only() -> int:
    """Fake site + real host process, no browser."""
    from flattr_testing.fake_site import FakeSite
    from flattr_testing.host import HostProcess, install_launcher

    work = Path(tempfile.mkdtemp(prefix="flattr-demo-"))
    try:
        with FakeSite(seed=True) as site:
            print(f"fake flattr.com  {site.site}\nfake API         {site.api}")
            user = site.create_user("demo-user", active=True)
            launcher = install_launcher(work / "profile", work / "home")
            print(f"host launcher    {launcher}")
            env = {"FLATTR_API_BASE": site.api, "FLATTR_CA_BUNDLE": site.ca,
                   "FLATTR_SUBMIT_DELAY_S": "0.2", "FLATTR_LOG_LEVEL": "info"}
            host = HostProcess(launcher, work / "home", env=env)
            try:
                for label, kind, fields in [
                    ("hello", "hello", {"extension": {"id": "demo", "version": "0.1.0",
                                                      "build": "dev"}}),
                    ("set the token", "set-token", {"detail": {
                        "accessToken": user["token"], "subscription": {"active": True}}}),
                    ("flattr two pages", "flattr", {"urls": PAGES}),
                ]:
                    reply = host.request(kind, **fields)
                    print(f"\n> {label}: {kind}\n< {json.dumps(reply.get('result', reply))}")
                event = host.wait_event(lambda s: s["queue"]["done"] >= len(PAGES), timeout=30)
                print(f"\n< state event: {json.dumps(event['state'])}")
            finally:
                host.close_stdin()
                host.wait(15)
                host.kill()
            print("\nthe fake API received:")
            for entry in site.journal(method="POST", path="/rest/v2/flattr/bulk"):
                print(f"  POST {entry['path']}  {entry['body']}")
            print("\nthe host's log:")
            subprocess.run([str(launcher), "logs"], env={**os.environ,
                           "FLATTR_HOST_HOME": str(work / "home")}, check=False)
            print("\nstatus:")
            subprocess.run([str(launcher), "status"], env={**os.environ,
                           "FLATTR_HOST_HOME": str(work / "home")}, check=False)
            received = {item["url"] for entry in site.journal(
                method="POST", path="/rest/v2/flattr/bulk")
                for item in json.loads(entry["body"])}
        ok = set(PAGES) <= received
        print("\nboth pages reached the API" if ok else "\nNOT all pages reached the API")
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the demo against the fake flattr.com.")
    parser.add_argument("--browser", choices=["chromium", "firefox", "none"],
                        default=os.environ.get("BROWSER") or "chromium")
    options, rest = parser.parse_known_args()
    if options.browser == "none":
        return host_only()
    command = [sys.executable, str(ROOT / "demo" / "browser_demo.py"), *rest]
    if options.browser != "chromium":
        command[2:2] = ["--browser", options.browser]
    return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
