"""The fake flattr.com / api.flattr.com, run as its own process.

``flattr-fake-site --port 0 --api-port 0 --data-dir DIR`` prints one JSON line
when ready: ``{"site", "api", "ca", "spki"}``. The harness drives it only through
its admin API (``/__admin/`` on the API port, docs/fake-site.md), over HTTPS that
trusts the fake CA, like the host does with FLATTR_CA_BUNDLE. Loopback only.
"""

from __future__ import annotations

import json
import os
import select
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.model import BenchError, NotAvailable
from harness.spawn import Workspace, module_has


def require_fake_site() -> None:
    """Raise NotAvailable unless the fake site can be run."""
    if not module_has("fake_flattr", "__main__"):
        raise NotAvailable("fake site not landed: fake_flattr has no __main__ module")


@dataclass
class FakeSite:
    """A running fake site process and where it listens."""

    proc: subprocess.Popen[bytes]
    site: str
    api: str
    ca: Path
    spki: str
    log: Path

    @classmethod
    def start(cls, ws: Workspace, timeout_s: float = 60.0, persistent: bool = False) -> FakeSite:
        """Start the fake site; wait for its ready line.

        By default its state is in memory (the server's own storage is not what is
        measured); ``persistent`` keeps it in SQLite in a fresh data directory.
        """
        require_fake_site()
        data = ws.fresh("fake-site")
        log = data.parent / "fake-site.stderr"
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLATTR_")}
        argv = [sys.executable, "-m", "fake_flattr", "--port", "0", "--api-port", "0"]
        if persistent:
            argv += ["--data-dir", str(data)]
        with log.open("ab") as err:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env=env)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
        line = proc.stdout.readline() if ready else b""
        if not line:
            proc.kill()
            proc.wait()
            tail = log.read_text(errors="replace")[-500:]
            raise BenchError(f"fake site printed no ready line within {timeout_s} s: {tail}")
        info = json.loads(line)
        return cls(proc, info["site"], info["api"], Path(info["ca"]), info["spki"], log)

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting the fake CA."""
        return ssl.create_default_context(cafile=str(self.ca))

    def call(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None, timeout_s: float = 30.0) -> Any:
        """One JSON request to the API port; returns the decoded body (None if empty)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - https, our loopback server
            self.api + path, data=data, method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json",
                     **(headers or {})},
        )
        try:
            with urllib.request.urlopen(  # noqa: S310 - https to our own loopback server
                request, context=self.ssl_context(), timeout=timeout_s
            ) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300]
            raise BenchError(f"{method} {path} -> {exc.code}: {detail!r}") from exc
        return json.loads(raw) if raw.strip() else None

    def stop(self) -> None:
        """SIGTERM, then kill if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        time.sleep(0)
