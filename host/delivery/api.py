"""The Flattr API client the host needs: ``POST /rest/v2/flattr/bulk``.

Uses the standard library (``http.client`` and ``ssl``) so the host carries no HTTP
dependency and loads nothing of this until the first delivery, well after ``hello``
has been answered. One keep-alive connection is reused between requests and
reopened after any failure.

:func:`classify` turns a response into a :class:`Verdict` for the submitter; it is
pure and tested without a network. A 401, a 402 or a rate limit is answered with the
state machine's own event (:mod:`flattr_host.core.session`), applied as it is.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from flattr_host.core.errors import FlattrHostError
from flattr_host.core.retry import RETRYABLE_STATUSES
from flattr_host.core.session import ApiEvent, PaymentRequired, RateLimited, Unauthorized

if TYPE_CHECKING:
    import http.client
    import ssl
    from collections.abc import Mapping

    from flattr_host.delivery.proxy import Proxy

BULK_PATH = "/rest/v2/flattr/bulk"

#: At most this much of an answer's body is read; the decision needs none of it
#: (only the status decides, see :func:`classify`).
MAX_BODY_BYTES = 1 << 20

#: A kept-alive connection idle longer than this is closed and a new one opened:
#: shorter than the idle timeout of common servers and proxies (60 s and more).
IDLE_REUSE_S = 20.0

_monotonic = time.monotonic  # tests replace it


class NetworkError(FlattrHostError):
    """The request got no HTTP response: refused, reset, TLS failure or timeout."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


class Action(Enum):
    """What the submitter does with a batch after an answer."""

    DONE = "done"    # delivered; ``outcomes`` per position, ``note`` what the body left out
    RETRY = "retry"  # sent again later; ``retry_after`` may hold a server-requested time
    FAIL = "fail"    # refused for good: the items fail
    PAUSE = "pause"  # put back unchanged; ``event`` goes to the state machine


@dataclass(frozen=True)
class Verdict:
    """What a bulk answer means for the batch (docs/protocol.md#bulk-answers)."""

    action: Action
    reason: str
    outcomes: dict[int, str] = field(default_factory=dict)
    retry_after: float | None = None
    note: str | None = None
    event: ApiEvent | None = None  # with PAUSE: Unauthorized, PaymentRequired, RateLimited

    def __post_init__(self) -> None:
        if (self.action is Action.PAUSE) != (self.event is not None):
            raise ValueError(f"a {self.action.value} verdict with event {self.event!r}")


#: The outcome of an item in a batch the server accepted without saying more.
ACCEPTED = "accepted"

#: A rate-limit pause without a usable reset time: the documented window is one
#: hour (document 002), so waiting that long can never be too short.
RATE_LIMIT_WINDOW_S = 3600.0

#: A reset time already past still pauses this long, so that a wrong header or a
#: clock ahead of the server's cannot turn a rate limit into a loop of refusals.
RATE_LIMIT_MIN_S = 60.0

#: The longest wait a ``Retry-After`` may ask for; later means the header is wrong
#: (pending items still expire on their own schedule).
RETRY_AFTER_MAX_S = 86400.0


def is_accepted(status: int) -> bool:
    """Any 2xx: the server took the batch, whatever its body says (sending it again
    could flattr twice; docs/protocol.md#bulk-answers)."""
    return 200 <= status < 300


def classify(response: Response, urls: list[str], now: float) -> Verdict:
    """Decide what a bulk response means: the table in docs/protocol.md#bulk-answers.

    Only the status decides; a body is read for details (per-URL outcomes, an
    error code) and never turns an answer into another kind, since no document
    shows the bulk endpoint's bodies (docs/fake-site.md).
    """
    status = response.status
    if is_accepted(status):
        outcomes, note = read_outcomes(response.body, urls)
        return Verdict(Action.DONE, f"http {status}", outcomes, note=note)
    if status == 401:
        return Verdict(Action.PAUSE, "http 401", event=Unauthorized())
    if status == 402:
        return Verdict(Action.PAUSE, "http 402", event=PaymentRequired())
    code = _error_code(response.body)
    if _is_rate_limit(status, code, response.headers):
        reason = f"http {status}" + (f" {code}" if code else "")
        return Verdict(Action.PAUSE, reason, event=RateLimited(_rate_limit_until(response, now)))
    if 300 <= status < 400:
        # Never followed (http.client does not, and the token must not reach
        # another host); the server did not take the batch, so it waits and is
        # sent again to the configured API, until it expires.
        return Verdict(Action.RETRY, f"http {status} redirect not followed",
                       retry_after=_retry_after(response, now))
    if 400 <= status < 500 and status not in RETRYABLE_STATUSES:
        return Verdict(Action.FAIL, f"http {status}" + (f" {code}" if code else ""))
    # Document 000's list, any other server error, and statuses outside 100-599:
    # retrying can only cost a duplicate, giving up would lose the flattr.
    return Verdict(Action.RETRY, f"http {status}", retry_after=_retry_after(response, now))


def _retry_after(response: Response, now: float) -> float | None:
    from flattr_host.core.retry import parse_retry_after

    at = parse_retry_after(response.headers.get("retry-after"), now)
    return None if at is None else min(at, now + RETRY_AFTER_MAX_S)


def _is_rate_limit(status: int, code: str | None, headers: dict[str, str]) -> bool:
    """A documented 403 ``rate_limit_exceeded``, or what else can only mean one.

    429 is HTTP's own "too many requests"; a 403 with ``X-RateLimit-Remaining: 0``
    is the documented refusal with a body we cannot read (document 002 sends the
    headers on every rate-limited answer).
    """
    if status == 429:
        return True
    if status != 403:
        return False
    if code is not None:
        return code == "rate_limit_exceeded"
    return headers.get("x-ratelimit-remaining", "").strip() == "0"


def _rate_limit_until(response: Response, now: float) -> float:
    """When the pause ends: ``X-RateLimit-Reset``, else ``Retry-After``, else an hour.

    Document 002 says the reset is a Unix timestamp; a small number is read as
    seconds from now (some services send that), anything unreadable is ignored.
    A time already past pauses ``RATE_LIMIT_MIN_S``; no pause is longer than a
    window and that minimum.
    """
    until: float | None = None
    reset = response.headers.get("x-ratelimit-reset", "").strip()
    try:
        value = float(reset)
    except ValueError:
        value = float("nan")
    if value == value and value >= 0 and value != float("inf"):  # not NaN nor inf
        until = value if value >= 1e9 else now + value
    if until is None:
        until = _retry_after(response, now)
    if until is None:
        until = now + RATE_LIMIT_WINDOW_S
    if until <= now:
        # Already past by our clock (or a clock ahead of the server's): still wait.
        until = now + RATE_LIMIT_MIN_S
    return min(until, now + RATE_LIMIT_WINDOW_S + RATE_LIMIT_MIN_S)


def _error_code(body: bytes) -> str | None:
    """The ``error`` of a documented error body (document 002), or None."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    code = value.get("error") if isinstance(value, dict) else None
    return code if isinstance(code, str) and _OUTCOME.fullmatch(code) else None


_OUTCOME = re.compile(r"[a-z][a-z0-9_]{0,63}")


def read_outcomes(body: bytes, urls: list[str]) -> tuple[dict[int, str], str | None]:
    """Per-URL outcomes from the fake site's documented body, and a note if there are none.

    The body is ``{"results": [{"url", "status"}, ...]}`` in input order
    (docs/fake-site.md). Each result naming a URL of the batch with a plain status
    word settles the first position of that URL not yet settled (so a URL sent
    twice gets ``ok`` then ``flattr_once``); other results are ignored. Returns
    outcomes keyed by position in ``urls``, or ({}, why) when the body says nothing
    we understand: the batch is delivered all the same.
    """
    if not body.strip():
        return {}, "empty body"
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return {}, "body is not JSON"
    results = value.get("results") if isinstance(value, dict) else None
    if not isinstance(results, list):
        return {}, f"JSON {type(value).__name__} without a results list"
    positions: dict[str, list[int]] = {}
    for index, url in enumerate(urls):
        positions.setdefault(url, []).append(index)
    outcomes: dict[int, str] = {}
    for result in results:
        if not isinstance(result, dict):
            continue
        named, status = result.get("url"), result.get("status")
        free = positions.get(named) if isinstance(named, str) else None
        if free and isinstance(status, str) and _OUTCOME.fullmatch(status):
            outcomes[free.pop(0)] = status
    if not outcomes:
        return {}, "results name no URL of the batch with a status"
    missing = len(urls) - len(outcomes)
    return outcomes, f"results say nothing of {missing} URLs" if missing else None


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
        try:
            port = parts.port
        except ValueError as exc:  # "x:99999", "x:port"
            raise NetworkError(f"API base {base!r} has a bad port: {exc}") from None
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = port
        self._prefix = parts.path.rstrip("/")
        self._ca_bundle = ca_bundle
        self._timeout = timeout_s
        self._conn: http.client.HTTPConnection | None = None
        self._context: ssl.SSLContext | None = None
        self._environ = environ
        self._last_used = 0.0

    @property
    def proxy(self) -> Proxy | None:
        """The proxy requests go through (``HTTPS_PROXY`` / ``NO_PROXY``), None if direct."""
        import os

        from flattr_host.delivery.proxy import proxy_for

        env = os.environ if self._environ is None else self._environ
        return proxy_for(self._scheme, self._host, self._port, env)

    def _connection(self) -> http.client.HTTPConnection:
        import http.client

        if self._conn is None:
            from flattr_host.core.errors import ConfigError

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
        if self._conn is not None and _monotonic() - self._last_used > IDLE_REUSE_S:
            # Servers close idle keep-alive connections after their own timeout,
            # often silently; a POST on such a socket fails and costs a backoff.
            self.close()
        conn = self._connection()
        try:
            conn.request(method, path, body=body, headers=headers)
            raw = conn.getresponse()
            data = raw.read(MAX_BODY_BYTES + 1)
            response = Response(raw.status, {k.lower(): v for k, v in raw.getheaders()},
                                data[:MAX_BODY_BYTES])
            if raw.will_close or len(data) > MAX_BODY_BYTES or raw.status < 200:
                # The rest of an oversized body is never read, and after an
                # informational status the real answer may still follow: neither
                # connection may carry the next request (it would read them).
                self.close()
            self._last_used = _monotonic()
            return response
        except Exception as exc:  # http.client raises many kinds; all mean "no answer"
            self.close()
            raise NetworkError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
