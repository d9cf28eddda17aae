"""Request journal, scripted responses and connection faults (admin API backing).

Every request reaching the site or the API (admin calls excepted) is appended to
the journal *before* anything else happens, so a request answered by a script or
killed by a fault is still recorded. Tests wait for journal entries with
:meth:`Journal.wait_for` (a condition variable, no polling).

A script is a list of steps for one ``(server, METHOD, path)``, consumed one per
matching request, in order:

- ``{"status": 503, "headers": {"Retry-After": "7"}, "body": {...} | "text"}``:
  answer with exactly this instead of the real handler;
- ``{"fault": "delay", "seconds": s}``: wait, then handle the request normally;
- ``{"fault": "reset"}``: abort the TCP connection with RST (SO_LINGER 0);
- ``{"fault": "close"}``: close the connection without any response;
- ``{"fault": "hang"}``: never answer; the handler ends when the client gives up.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from . import FakeSiteError

FAULTS = ("delay", "reset", "close", "hang")
ADMIN_PREFIX = "/__admin/"
JSON_TYPE = "application/json;charset=utf-8"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ScriptError(FakeSiteError):
    """A script step that is not one of the accepted shapes."""


@dataclass
class Step:
    """One validated script step."""

    fault: str | None = None
    seconds: float = 0.0
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None


def parse_step(raw: object) -> Step:
    """Validate one step as given to the admin API; raises ScriptError with the reason."""
    if not isinstance(raw, dict):
        raise ScriptError(f"a script step must be an object, got {type(raw).__name__}")
    if "fault" in raw:
        fault = raw["fault"]
        if fault not in FAULTS:
            raise ScriptError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
        seconds = raw.get("seconds", 0)
        if fault == "delay" and (
            not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0
        ):
            raise ScriptError(f"delay needs seconds >= 0, got {seconds!r}")
        return Step(fault=str(fault), seconds=float(seconds))
    status = raw.get("status")
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise ScriptError(f"status must be an integer 100-599, got {status!r}")
    headers = raw.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str | int) for k, v in headers.items()
    ):
        raise ScriptError("headers must be an object of string names to string values")
    return Step(status=status, headers={k: str(v) for k, v in headers.items()},
                body=raw.get("body"))


def entry_matches(entry: dict[str, Any], *, method: str | None, path: str | None,
                  path_prefix: str | None, server: str | None, since: int) -> bool:
    """Whether a journal entry passes the filter (None means any)."""
    return (
        entry["seq"] > since
        and (method is None or entry["method"] == method.upper())
        and (path is None or entry["path"] == path)
        and (path_prefix is None or str(entry["path"]).startswith(path_prefix))
        and (server is None or entry["server"] == server)
    )


class Journal:
    """The request journal plus the scripts, shared by the site and API servers."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self.entries: list[dict[str, Any]] = []
        self.scripts: dict[tuple[str, str, str], deque[Step]] = {}
        self._seq = 0
        self._changed = asyncio.Condition()

    def clear(self) -> None:
        """Forget all entries and scripts (admin reset). Sequence numbers keep growing."""
        self.entries.clear()
        self.scripts.clear()

    def set_script(self, server: str, method: str, path: str, steps: list[Step]) -> None:
        """Replace the script for one method and path (an empty list removes it)."""
        key = (server, method.upper(), path)
        if steps:
            self.scripts[key] = deque(steps)
        else:
            self.scripts.pop(key, None)

    def next_step(self, server: str, method: str, path: str) -> Step | None:
        """Pop the next step for this request, if a script has one left."""
        steps = self.scripts.get((server, method, path))
        if not steps:
            return None
        step = steps.popleft()
        if not steps:
            del self.scripts[(server, method, path)]
        return step

    async def record(self, server: str, request: web.Request) -> None:
        """Append the request to the journal and wake waiters."""
        body = await request.read()
        self._seq += 1
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self.entries.append({
            "seq": self._seq,
            "server": server,
            "method": request.method,
            "path": request.path,
            "query": request.rel_url.raw_query_string,
            "headers": headers,
            "body": body.decode("utf-8", "replace"),
            "time": self._now(),
        })
        async with self._changed:
            self._changed.notify_all()

    def select(self, **flt: Any) -> list[dict[str, Any]]:
        """Entries passing the filter (see :func:`entry_matches`)."""
        return [e for e in self.entries if entry_matches(e, **flt)]

    async def wait_for(self, count: int, timeout: float, **flt: Any) -> tuple[list[Any], bool]:
        """Wait until ``count`` entries match; returns (matches, timed_out)."""

        def enough() -> bool:
            return len(self.select(**flt)) >= count

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(enough), timeout)
                timed_out = False
            except TimeoutError:
                timed_out = True
        return self.select(**flt), timed_out


def _script_response(step: Step) -> web.Response:
    headers = dict(step.headers)
    if step.body is None:
        data = b""
    elif isinstance(step.body, str):
        data = step.body.encode()
    else:
        data = json.dumps(step.body).encode()
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = JSON_TYPE
    return web.Response(status=step.status, body=data, headers=headers)


def _reset(request: web.Request) -> None:
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # SO_LINGER on with timeout 0: close() sends RST instead of FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def _hang_forever() -> None:
    # Ends only by cancellation: the runner uses handler_cancellation=True, so
    # the client hanging up (or server shutdown) cancels this wait.
    await asyncio.Event().wait()


def middleware(journal: Journal, server: str) -> Any:
    """aiohttp middleware that journals requests and applies scripts for ``server``."""

    @web.middleware
    async def journal_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(ADMIN_PREFIX):
            return await handler(request)
        await journal.record(server, request)
        step = journal.next_step(server, request.method, request.path)
        if step is None:
            return await handler(request)
        if step.fault == "delay":
            await asyncio.sleep(step.seconds)
            return await handler(request)
        if step.fault == "reset":
            _reset(request)
            await _hang_forever()
        if step.fault == "close":
            if request.transport is not None:
                request.transport.close()
            await _hang_forever()
        if step.fault == "hang":
            await _hang_forever()
        return _script_response(step)

    return journal_middleware
