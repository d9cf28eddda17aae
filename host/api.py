"""The Flattr API client the host needs: ``POST /rest/v2/flattr/bulk``.

Uses the standard library (``http.client`` and ``ssl``) so the host carries no HTTP
dependency and loads nothing of this until the first delivery, well after ``hello``
has been answered. One keep-alive connection is reused between requests and
reopened after any failure.

:func:`classify` turns a response into a decision for the submitter; it is pure and
tested without a network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flattr_host.errors import FlattrHostError
from flattr_host.retry import RETRYABLE_STATUSES

if TYPE_CHECKING:
    import http.client
    import ssl
    from collections.abc import Mapping

    from flattr_host.proxy import Proxy

BULK_PATH = "/rest/v2/flattr/bulk"


class NetworkError(FlattrHostError):
    """The request got no HTTP response: refused, reset, TLS failure or timeout."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True)
class Decision:
    """What to do with a batch after a response.

    ``kind`` is one of: ``done`` (``outcomes`` maps each URL to its result),
    ``retry`` (``retry_after`` may hold a server-requested time), ``fail``,
    ``unauthorized``, ``payment_required``, ``rate_limited`` (``retry_after`` holds the
    reset time).
    """

    kind: str
    reason: str
    outcomes: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None


def classify(response: Response, urls: list[str], now: float) -> Decision:
    """Decide what a bulk response means (document 000 and docs/fake-site.md)."""
    status = response.status
    if 200 <= status < 300:
        outcomes = _parse_outcomes(response.body, urls)
        if outcomes is None:
            return Decision("retry", f"unreadable {status} response body")
        return Decision("done", f"http {status}", outcomes)
    if status == 401:
        return Decision("unauthorized", "http 401")
    if status == 402:
        return Decision("payment_required", "http 402")
    if status == 403 and _error_code(response.body) == "rate_limit_exceeded":
        reset = response.headers.get("x-ratelimit-reset", "")
        until = float(reset) if reset.isdigit() else now + 3600.0
        return Decision("rate_limited", "http 403 rate_limit_exceeded", retry_after=until)
    if status in RETRYABLE_STATUSES or status >= 500 or status < 400:
        # Document 000's list, plus any other server error or an unexpected status:
        # retrying can only cost a duplicate, giving up would lose the flattr.
        from flattr_host.retry import parse_retry_after

        return Decision("retry", f"http {status}",
                        retry_after=parse_retry_after(response.headers.get("retry-after"), now))
    code = _error_code(response.body)
    return Decision("fail", f"http {status}" + (f" {code}" if code else ""))


def _error_code(body: bytes) -> str | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    code = value.get("error") if isinstance(value, dict) else None
    return code if isinstance(code, str) and len(code) <= 64 else None


def _parse_outcomes(body: bytes, urls: list[str]) -> dict[str, str] | None:
    """Per-URL statuses from ``{"results": [{"url", "status"}, ...]}``; None if garbage."""
    try:
        value = json.loads(body)
    except ValueError:
        return None
    results = value.get("results") if isinstance(value, dict) else None
    if not isinstance(results, list) or len(results) != len(urls):
        return None
    outcomes: dict[str, str] = {}
    for sent, result in zip(urls, results, strict=True):
        if not isinstance(result, dict):
            return None
        status = result.get("status")
        if not isinstance(status, str) or result.get("url") != sent:
            return None
        outcomes[sent] = status[:64]
    return outcomes


class ApiClient:
    """A keep-alive HTTPS (or HTTP, for tests) connection to the API base URL, through
    the proxy ``HTTPS_PROXY`` names unless ``NO_PROXY`` matches the API host."""

    def __init__(self, base: str, ca_bundle: str | None, timeout_s: float,
                 environ: Mapping[str, str] | None = None) -> None:
        """``environ`` (default: the process environment, read per connection) holds
        ``HTTPS_PROXY`` / ``NO_PROXY``."""
        from urllib.parse import urlsplit

        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise NetworkError(f"API base {base!r} is not an http(s) URL")
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._ca_bundle = ca_bundle
        self._timeout = timeout_s
        self._conn: http.client.HTTPConnection | None = None
        self._context: ssl.SSLContext | None = None
        self._environ = environ

    @property
    def proxy(self) -> Proxy | None:
        """The proxy requests go through (``HTTPS_PROXY`` / ``NO_PROXY``), None if direct."""
        import os

        from flattr_host.proxy import proxy_for

        env = os.environ if self._environ is None else self._environ
        return proxy_for(self._scheme, self._host, self._port, env)

    def _connection(self) -> http.client.HTTPConnection:
        import http.client

        if self._conn is None:
            from flattr_host.errors import ConfigError

            try:
                proxy = self.proxy
            except ConfigError as exc:  # a bad HTTPS_PROXY: no request can be sent
                raise NetworkError(str(exc)) from None
            # Through a proxy the connection goes to the proxy, and set_tunnel sends
            # CONNECT host:port first; TLS then runs inside the tunnel, end to end
            # with the API, so the proxy never sees the Authorization header.
            address = (proxy.host, proxy.port) if proxy else (self._host, self._port)
            if self._scheme == "https":
                if self._context is None:
                    import ssl

                    self._context = ssl.create_default_context()
                    if self._ca_bundle:
                        self._context.load_verify_locations(cafile=self._ca_bundle)
                conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                    *address, timeout=self._timeout, context=self._context
                )
            else:
                conn = http.client.HTTPConnection(*address, timeout=self._timeout)
            if proxy is not None:
                headers = ({"Proxy-Authorization": proxy.authorization}
                           if proxy.authorization else None)
                conn.set_tunnel(self._host, self._port, headers=headers)
            self._conn = conn
        return self._conn

    def post_bulk(self, token: str, urls: list[str]) -> Response:
        """POST the URLs; raises NetworkError when no HTTP response arrives."""
        body = json.dumps([{"url": url} for url in urls]).encode("utf-8")
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "flattr-companion-host",
        }
        return self._request("POST", self._prefix + BULK_PATH, body, headers)

    def _request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Response:
        conn = self._connection()
        try:
            conn.request(method, path, body=body, headers=headers)
            raw = conn.getresponse()
            data = raw.read()
            response = Response(raw.status, {k.lower(): v for k, v in raw.getheaders()}, data)
            if raw.will_close:
                self.close()
            return response
        except Exception as exc:  # http.client raises many kinds; all mean "no answer"
            self.close()
            raise NetworkError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
