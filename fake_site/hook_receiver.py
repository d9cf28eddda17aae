"""A partner's web-hook endpoint for tests (document 001, "Web Hook callbacks").

:class:`HookReceiver` is a tiny HTTP server on 127.0.0.1 that records every POST
Flattr makes to a partner's hook URL. Like a careful partner it checks each post:
a form-encoded body (``application/x-www-form-urlencoded``) with an ``_event``
parameter. Posts that pass are answered 200 and kept in :attr:`events`; others
are answered 400 and kept in :attr:`rejected` with the reason. A test registers
:attr:`url` as the partner's ``hook_url`` and waits for an event::

    with HookReceiver() as hooks:
        site.admin("POST", "partners", {"prefix": "partner:shop", "hook_url": hooks.url, ...})
        ...                                     # a user flattrs a partner's thing
        event = hooks.wait_for("pendingclickcreate")
        assert event.form["thing_owner_id"] == "partner:shop:7"

:meth:`answer_with` makes it answer the next posts with other statuses, to see
the sender retry. Standard library only, so a partner's own test suite can use
it from an installed ``fake_flattr``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs

from . import FakeSiteError

FORM_TYPE = "application/x-www-form-urlencoded"
MAX_BODY = 1024 * 1024


class HookTimeout(FakeSiteError, AssertionError):
    """:meth:`HookReceiver.wait_for` saw fewer events than asked within the timeout."""


@dataclass(frozen=True)
class HookPost:
    """One POST received: its path, headers, raw body and parsed form (first values)."""

    path: str
    headers: dict[str, str]
    body: bytes
    form: dict[str, str]
    time: float

    @property
    def event(self) -> str:
        """The ``_event`` parameter ("" when missing)."""
        return self.form.get("_event", "")


@dataclass(frozen=True)
class Rejected:
    """A POST the receiver refused, and why."""

    post: HookPost
    reason: str


class HookReceiver:
    """Records partner web-hook posts; ``start``/``stop`` or use as a context manager."""

    def __init__(self, path: str = "/hooks/flattr") -> None:
        self.path = path
        self.events: list[HookPost] = []
        self.rejected: list[Rejected] = []
        self._answers: list[int] = []
        self._changed = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The hook URL to register (``http://127.0.0.1:<port><path>``)."""
        assert self._server is not None, "the receiver is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.path}"

    def start(self) -> HookReceiver:
        """Listen on a free loopback port, serving in a daemon thread."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self.send_error(413, f"body of {length} bytes, the maximum is {MAX_BODY}")
                    return
                status = receiver._record(self.path, dict(self.headers.items()),
                                          self.rfile.read(length))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: tests read the records instead

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="hook-receiver")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (idempotent)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> HookReceiver:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def answer_with(self, *statuses: int) -> None:
        """Answer the next posts with these statuses in turn (then 200 again).

        A post answered with a non-2xx status is still recorded in :attr:`events`
        (it was well-formed); the answer only tells the sender to retry.
        """
        with self._changed:
            self._answers.extend(statuses)

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> int:
        ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        try:
            parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            parsed = {}
        post = HookPost(path, headers, body, {k: v[0] for k, v in parsed.items()}, time.time())
        reason = ""
        if path.split("?")[0] != self.path:
            reason = f"posted to {path!r}, the hook path is {self.path!r}"
        elif ctype.split(";")[0].strip().lower() != FORM_TYPE:
            reason = f"Content-Type is {ctype!r}, expected {FORM_TYPE}"
        elif not post.event:
            reason = "no _event parameter in the form"
        with self._changed:
            if reason:
                self.rejected.append(Rejected(post, reason))
                status = 400
            else:
                self.events.append(post)
                status = self._answers.pop(0) if self._answers else 200
            self._changed.notify_all()
        return status

    def received(self, event: str | None = None) -> list[HookPost]:
        """Accepted posts so far, optionally only those whose ``_event`` is ``event``."""
        with self._changed:
            return [p for p in self.events if event is None or p.event == event]

    def wait_for(self, event: str, count: int = 1, timeout: float = 10.0) -> HookPost:
        """Block until ``count`` posts with ``_event == event`` arrived; return the last.

        Raises HookTimeout (an AssertionError) listing what did arrive.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                matching = [p for p in self.events if p.event == event]
                if len(matching) >= count:
                    return matching[count - 1]
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [p.event for p in self.events]
                    raise HookTimeout(
                        f"{len(matching)} of {count} {event!r} posts within {timeout:g} s;"
                        f" received events {seen}, rejected {[r.reason for r in self.rejected]}")
                self._changed.wait(left)
