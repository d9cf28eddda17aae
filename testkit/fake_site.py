"""Run the fake flattr.com as a real subprocess and drive its admin API.

``FakeSite.start()`` runs ``sys.executable -m fake_flattr`` with free ports,
reads its one JSON ready line and exposes ``site``, ``api``, ``ca`` and
``spki``. The admin methods are thin typed wrappers over ``/__admin/`` (see
docs/fake-site.md); they use urllib with an SSL context trusting only the
fake site's CA. ``stop()`` sends SIGTERM and waits.

This is the one client of the admin API: the pytest plugin's ``flattr_site``
fixture, the demo and the unit tests all drive the fake site through it.
"""

from __future__ import annotations

import json
import os
import select
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlencode, urlsplit

from flattr_testing.errors import FlattrTestingError

READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
#: seconds :meth:`FakeSite.wait_for` waits by default (a browser should be prompt)
WAIT_TIMEOUT = 15.0
BULK_PATH = "/rest/v2/flattr/bulk"


class FakeSiteError(FlattrTestingError, AssertionError):
    """The fake site failed to start or an admin call was refused."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class FakeSite:
    """A running ``flattr-fake-site`` subprocess and its admin client."""

    def __init__(self, *, seed: bool = True, data_dir: Path | None = None,
                 port: int = 0, api_port: int = 0, extra_args: tuple[str, ...] = ()) -> None:
        self.seed = seed
        self.data_dir = data_dir
        self.ports = (port, api_port)
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None
        self.site = ""
        self.api = ""
        self.ca = ""
        self.spki = ""
        self.api_http = ""  # plain-HTTP API port (button loader and iframes only)
        self.files = ""
        self._tls: ssl.SSLContext | None = None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> FakeSite:
        """Start the subprocess and wait for its ready line (at most READY_TIMEOUT s)."""
        cmd = [sys.executable, "-m", "fake_flattr", "--port", str(self.ports[0]),
               "--api-port", str(self.ports[1]), *self.extra_args]
        if self.seed:
            cmd.append("--seed")
        if self.data_dir is not None:
            cmd += ["--data-dir", str(self.data_dir)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], READY_TIMEOUT)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=STOP_TIMEOUT)
            raise FakeSiteError(f"fake site did not start: {err.decode(errors='replace')}")
        info = json.loads(line)
        self.site, self.api, self.ca, self.spki = (
            info["site"], info["api"], info["ca"], info["spki"])
        self.api_http = info.get("api_http", "")
        self.files = info["files"]
        self._tls = ssl.create_default_context(cafile=self.ca)
        return self

    def stop(self) -> int:
        """SIGTERM, wait, return the exit status (kills after STOP_TIMEOUT s)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return self.proc.returncode

    def __enter__(self) -> FakeSite:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- HTTP ------------------------------------------------------------------

    @property
    def tls(self) -> ssl.SSLContext:
        """Client SSL context trusting the fake site's CA (hostname 127.0.0.1 checks)."""
        assert self._tls is not None, "start() first"
        return self._tls

    @property
    def ports_in_use(self) -> tuple[int, int]:
        """(site port, API port)."""
        return int(self.site.rsplit(":", 1)[1]), int(self.api.rsplit(":", 1)[1])

    @property
    def files_port(self) -> int:
        """The files.flattr.com port."""
        return int(self.files.rsplit(":", 1)[1])

    def host_resolver_rules(self) -> str:
        """The Chromium ``--host-resolver-rules`` value mapping the three names here
        (``http://api.flattr.com``, port 80, to the plain-HTTP button port)."""
        site_port, api_port = self.ports_in_use
        rules = (f"MAP flattr.com 127.0.0.1:{site_port}, MAP api.flattr.com 127.0.0.1:{api_port},"
                 f" MAP files.flattr.com 127.0.0.1:{self.files_port}")
        http_port = urlsplit(self.api_http).port if self.api_http else None
        return f"MAP api.flattr.com:80 127.0.0.1:{http_port}, {rules}" if http_port else rules

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None,
              query: dict[str, Any] | None = None, timeout: float = 70.0) -> Any:
        """Call ``/__admin/<path>``; raises FakeSiteError on a non-2xx answer."""
        url = f"{self.api}/__admin/{path}"
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method,  # noqa: S310
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(  # noqa: S310 - https to our own server
                request, context=self.tls, timeout=timeout
            ) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = raw
            raise FakeSiteError(f"admin {method} {path}: {error.code} {parsed!r}",
                                error.code, parsed) from None

    # -- admin API ---------------------------------------------------------------

    def reset(self, seed: bool | None = None) -> None:
        """Back to the start-up state (seeded if started with seed, or as ``seed`` says)."""
        self.admin("POST", "reset", {} if seed is None else {"seed": seed})

    def create_user(self, username: str, *, active: bool = True, password: str | None = None,
                    scopes: list[str] | None = None) -> dict[str, Any]:
        """Create a user; returns ``{username, token, password, subscription}``."""
        body: dict[str, Any] = {"username": username, "subscription": {"active": active}}
        if password is not None:
            body["password"] = password
        if scopes is not None:
            body["scopes"] = scopes
        created: dict[str, Any] = self.admin("POST", "users", body)
        return created

    def set_subscription(self, username: str, active: bool,
                         expires_in: float | None = None) -> dict[str, Any]:
        """Change a subscription (pushed to the user's open pages); returns the new state."""
        body: dict[str, Any] = {"active": active}
        if expires_in is not None:
            body["expires_in"] = expires_in
        result: dict[str, Any] = self.admin("POST", f"users/{username}/subscription", body)
        return result

    def revoke(self, token: str | None = None, *, username: str | None = None) -> int:
        """Revoke one token, or every token of ``username``; returns how many."""
        if (token is None) == (username is None):
            raise ValueError("revoke() takes exactly one of token= or username=")
        body = {"token": token} if token is not None else {"username": username}
        count: int = self.admin("POST", "tokens/revoke", body)["revoked"]
        return count

    def script(self, method: str, path: str, responses: list[dict[str, Any]],
               server: str = "api") -> None:
        """Answer the next requests to ``method path`` with ``responses`` in order."""
        self.admin("POST", "script", {"method": method, "path": path,
                                      "responses": responses, "server": server})

    def journal(self, *, method: str | None = None, path: str | None = None,
                server: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        """Journalled requests matching the filter, oldest first."""
        entries: list[dict[str, Any]] = self.admin("GET", "journal", query={
            "method": method, "path": path, "server": server, "since": since})["entries"]
        return entries

    def wait_for(self, count: int, *, method: str | None = None, path: str | None = None,
                 server: str | None = None, since: int = 0,
                 timeout: float = WAIT_TIMEOUT) -> list[dict[str, Any]]:
        """Long-poll until ``count`` requests match; raises FakeSiteError on timeout."""
        answer = self.admin("GET", "journal/wait", query={
            "count": count, "timeout": timeout, "method": method, "path": path,
            "server": server, "since": since}, timeout=timeout + 10)
        entries: list[dict[str, Any]] = answer["entries"]
        if answer["timed_out"]:
            raise FakeSiteError(f"only {len(entries)} of {count} matching requests"
                                f" ({method} {path}) within {timeout} s: {entries}")
        return entries

    def bulk_posts(self) -> list[dict[str, Any]]:
        """The API's bulk flattr requests so far, each with its body parsed as ``json``
        (None when the body is not JSON)."""
        posts = self.journal(server="api", method="POST", path=BULK_PATH)
        for post in posts:
            try:
                post["json"] = json.loads(post["body"])
            except (TypeError, ValueError):
                post["json"] = None
        return posts

    def bulk_urls(self, token: str | None = None) -> list[str]:
        """URLs sent in bulk POSTs so far (only those with ``Bearer token`` if given)."""
        urls: list[str] = []
        for post in self.bulk_posts():
            headers = {k.lower(): v for k, v in post["headers"].items()}
            if token is not None and headers.get("authorization") != f"Bearer {token}":
                continue
            items = post["json"] if isinstance(post["json"], list) else []
            urls.extend(str(item["url"]) for item in items if isinstance(item, dict))
        return urls

    def user_flattr_urls(self, token: str) -> list[str]:
        """URLs of the things the token's user has flattred, from the REST API."""
        request = urllib.request.Request(  # noqa: S310 - https to our own server
            f"{self.api}/rest/v2/user/flattrs?count=100",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )
        with urllib.request.urlopen(request, context=self.tls, timeout=30) as resp:  # noqa: S310
            flattrs = json.loads(resp.read())
        return [str(f["thing"]["url"]) for f in flattrs]

    def journal_text(self, limit: int = 200) -> str:
        """The last ``limit`` journal entries, one line each, for failure reports."""
        lines = []
        for entry in self.journal()[-limit:]:
            query = f"?{entry['query']}" if entry.get("query") else ""
            lines.append(f"#{entry.get('seq', '?')} {entry.get('server', '?'):4} "
                         f"{entry.get('method', '?'):6} {entry.get('path', '?')}{query}")
        return "\n".join(lines) or "(no requests)"

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Set rate_limit, webhook_retry_delays, code_lifetime or bulk_answer."""
        result: dict[str, Any] = self.admin("POST", "config", settings)
        return result

    def webhook_attempts(self, *, wait: int = 0, delivered: bool | None = None,
                         timeout: float = 10.0) -> list[dict[str, Any]]:
        """Web hook attempts; with ``wait`` long-polls until that many match."""
        answer = self.admin("GET", "webhooks", query={
            "wait": wait or None, "timeout": timeout,
            "delivered": None if delivered is None else int(delivered)}, timeout=timeout + 10)
        if answer["timed_out"]:
            raise FakeSiteError(f"fewer than {wait} web hook attempts within {timeout} s")
        attempts: list[dict[str, Any]] = answer["attempts"]
        return attempts

