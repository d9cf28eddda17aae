"""A small WebDriver BiDi client for driving Firefox in tests.

Written for this project on the `websockets` asyncio API (17.x). The test suite is
synchronous (pytest + Playwright's sync API), so :class:`BidiSession` is a sync facade:
it owns a private event loop in a daemon thread and every call blocks with a timeout.

Contract:
- Every command has a timeout; nothing blocks forever. A timeout raises
  :class:`BidiTimeoutError` naming the command and the limit.
- A command the browser refuses raises :class:`BidiCommandError` carrying the command
  name, the BiDi error code and the browser's message (WebDriver BiDi spec, "Errors").
- A script that throws raises :class:`BidiScriptError` with the exception text.
- Events are buffered from the moment the connection opens, so an event that arrives
  before :meth:`BidiSession.wait_for_event` is called is not lost.

Only the commands the tests need are wrapped; :meth:`BidiSession.send` reaches any
other command by name.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import math
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from flattr_testing.errors import FlattrTestingError

__all__ = [
    "DEFAULT_TIMEOUT",
    "AsyncBidiClient",
    "BidiCommandError",
    "BidiConnectionError",
    "BidiError",
    "BidiEvent",
    "BidiScriptError",
    "BidiSession",
    "BidiTimeoutError",
    "Channel",
    "RemoteReference",
    "Route",
    "deserialize",
    "serialize",
]

DEFAULT_TIMEOUT = 15.0
# Events kept while nobody waits for them; older ones are dropped first.
EVENT_BACKLOG_LIMIT = 10_000

JsonDict = dict[str, Any]
T = TypeVar("T")
# Called in the client's event loop for every event of one method; may send commands.
EventHandler = Callable[["BidiEvent", "AsyncBidiClient"], Coroutine[Any, Any, None]]


class BidiError(FlattrTestingError):
    """Root of every error raised by this module."""


class BidiConnectionError(BidiError):
    """The WebSocket could not be opened, or closed while a command was pending."""


class BidiTimeoutError(BidiError):
    """A command, connection or event wait exceeded its timeout."""


class BidiCommandError(BidiError):
    """The browser answered a command with an error message."""

    def __init__(self, command: str, error: str, message: str, stacktrace: str = "") -> None:
        super().__init__(f"{command} failed: {error}: {message}")
        self.command = command
        self.error = error
        self.message = message
        self.stacktrace = stacktrace


class BidiScriptError(BidiError):
    """script.evaluate / script.callFunction returned an exception result."""

    def __init__(self, command: str, text: str, details: Mapping[str, Any]) -> None:
        super().__init__(f"{command}: script threw: {text}")
        self.command = command
        self.text = text
        self.details = dict(details)


@dataclass(frozen=True)
class BidiEvent:
    """One event message: `method` (e.g. "log.entryAdded") and its `params`."""

    method: str
    params: JsonDict


@dataclass(frozen=True)
class Channel:
    """A script.ChannelValue argument: calls to it in page script emit script.message."""

    name: str


@dataclass(frozen=True)
class Route:
    """A canned response for requests to one URL (see :meth:`BidiSession.route`)."""

    url: str
    body: str
    status: int = 200
    content_type: str = "text/html; charset=utf-8"


@dataclass(frozen=True)
class RemoteReference:
    """A remote value that has no Python equivalent (node, window, function, ...)."""

    type: str
    handle: str | None
    shared_id: str | None
    value: Any = None


# -- value conversion (WebDriver BiDi spec, "script.LocalValue" / "script.RemoteValue") --


def serialize(value: Any) -> JsonDict:
    """Convert a Python value to a script.LocalValue for callFunction arguments."""
    if isinstance(value, Channel):
        return {"type": "channel", "value": {"channel": value.name}}
    if isinstance(value, RemoteReference):
        ref: JsonDict = {}
        if value.handle is not None:
            ref["handle"] = value.handle
        if value.shared_id is not None:
            ref["sharedId"] = value.shared_id
        return ref
    if value is None:
        return {"type": "null"}
    if isinstance(value, bool):
        return {"type": "boolean", "value": value}
    if isinstance(value, int):
        return {"type": "number", "value": value}
    if isinstance(value, float):
        if math.isnan(value):
            return {"type": "number", "value": "NaN"}
        if math.isinf(value):
            return {"type": "number", "value": "Infinity" if value > 0 else "-Infinity"}
        return {"type": "number", "value": value}
    if isinstance(value, str):
        return {"type": "string", "value": value}
    if isinstance(value, Mapping):
        return {"type": "object", "value": [[str(k), serialize(v)] for k, v in value.items()]}
    if isinstance(value, list | tuple):
        return {"type": "array", "value": [serialize(v) for v in value]}
    raise TypeError(f"cannot pass {type(value).__name__} to page script: {value!r}")


_SPECIAL_NUMBERS = {"NaN": math.nan, "-0": -0.0, "Infinity": math.inf, "-Infinity": -math.inf}


def deserialize(remote: Mapping[str, Any]) -> Any:
    """Convert a script.RemoteValue to plain Python.

    undefined and null become None; objects become dicts (non-string keys as their
    deserialized value when hashable, else their JSON text); Map -> dict, Set -> list,
    Date -> ISO string, bigint -> int. Other types become :class:`RemoteReference`.
    """
    kind = remote.get("type")
    value = remote.get("value")
    if kind in ("undefined", "null"):
        return None
    if kind == "number":
        return _SPECIAL_NUMBERS.get(value, value) if isinstance(value, str) else value
    if kind in ("string", "boolean"):
        return value
    if kind == "bigint":
        return int(str(value))
    if kind == "date":
        return value
    if kind in ("array", "set") and isinstance(value, list):
        return [deserialize(v) for v in value]
    if kind in ("object", "map") and isinstance(value, list):
        out: dict[Any, Any] = {}
        for key, item in value:
            if isinstance(key, str):
                out[key] = deserialize(item)
            else:
                k = deserialize(key)
                out[k if isinstance(k, str | int | float | bool) else json.dumps(key)] = (
                    deserialize(item)
                )
        return out
    return RemoteReference(
        type=str(kind),
        handle=remote.get("handle"),
        shared_id=remote.get("sharedId"),
        value=value,
    )


# -- asyncio client --


class AsyncBidiClient:
    """One WebSocket connection to a BiDi endpoint; commands and buffered events."""

    def __init__(self, ws: ClientConnection, url: str) -> None:
        self._ws = ws
        self.url = url
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[str, asyncio.Future[JsonDict]]] = {}
        self._events: collections.deque[BidiEvent] = collections.deque(
            maxlen=EVENT_BACKLOG_LIMIT
        )
        self._event_added = asyncio.Condition()
        self._closed_reason: str | None = None
        # method -> handlers run as tasks instead of buffering (they must answer
        # while a blocking command, e.g. a navigation, is still pending).
        self._handlers: dict[str, list[EventHandler]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._reader = asyncio.get_running_loop().create_task(self._read_loop())

    @classmethod
    async def connect(cls, url: str, timeout: float = DEFAULT_TIMEOUT) -> AsyncBidiClient:
        """Open `url` (ws://127.0.0.1:PORT/session). No Origin header is sent:
        Firefox refuses any Origin not allowed by --remote-allow-origins."""
        try:
            ws = await connect(
                url,
                origin=None,
                proxy=None,  # never route loopback BiDi through *_PROXY variables
                open_timeout=timeout,
                max_size=None,  # screenshots and large trees exceed 1 MiB
                compression=None,
                ping_interval=None,  # the browser may be busy; commands have timeouts
            )
        except TimeoutError as exc:
            raise BidiTimeoutError(f"connect {url}: no handshake within {timeout} s") from exc
        except (OSError, WebSocketException) as exc:
            raise BidiConnectionError(f"connect {url}: {exc}") from exc
        return cls(ws, url)

    async def _read_loop(self) -> None:
        try:
            async for raw in self._ws:
                self._dispatch(json.loads(raw))
        except ConnectionClosed as exc:
            self._closed_reason = f"connection closed ({exc})"
        except Exception as exc:
            self._closed_reason = f"reader failed: {exc!r}"
        else:
            self._closed_reason = "connection closed"
        for command, fut in self._pending.values():
            if not fut.done():
                fut.set_exception(
                    BidiConnectionError(f"{command}: {self._closed_reason} before the reply")
                )
        self._pending.clear()
        async with self._event_added:
            self._event_added.notify_all()

    def _dispatch(self, msg: JsonDict) -> None:
        msg_id = msg.get("id")
        if msg.get("type") == "event":
            event = BidiEvent(str(msg.get("method")), msg.get("params") or {})
            handlers = self._handlers.get(event.method)
            if handlers:
                for handler in handlers:
                    task = asyncio.get_running_loop().create_task(handler(event, self))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                return
            self._events.append(event)
            asyncio.get_running_loop().create_task(self._notify())
            return
        if isinstance(msg_id, int) and msg_id in self._pending:
            command, fut = self._pending.pop(msg_id)
            if fut.done():
                return
            if msg.get("type") == "error":
                fut.set_exception(
                    BidiCommandError(
                        command,
                        str(msg.get("error")),
                        str(msg.get("message")),
                        str(msg.get("stacktrace", "")),
                    )
                )
            else:
                fut.set_result(msg.get("result") or {})

    async def _notify(self) -> None:
        async with self._event_added:
            self._event_added.notify_all()

    async def send(
        self, command: str, params: Mapping[str, Any] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> JsonDict:
        """Send one command and return its `result`; raise on error or timeout."""
        if self._closed_reason is not None:
            raise BidiConnectionError(f"{command}: {self._closed_reason}")
        msg_id = next(self._ids)
        fut: asyncio.Future[JsonDict] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = (command, fut)
        payload = json.dumps({"id": msg_id, "method": command, "params": dict(params or {})})
        try:
            await asyncio.wait_for(self._ws.send(payload), timeout)
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError as exc:
            raise BidiTimeoutError(f"{command}: no reply within {timeout} s") from exc
        except ConnectionClosed as exc:
            raise BidiConnectionError(f"{command}: connection closed ({exc})") from exc
        finally:
            self._pending.pop(msg_id, None)

    async def wait_for_event(
        self, method: str, predicate: Callable[[BidiEvent], bool] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> BidiEvent:
        """Remove and return the oldest buffered event named `method` matching
        `predicate`, waiting up to `timeout` seconds for one to arrive."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self._event_added:
            while True:
                for event in self._events:
                    if event.method == method and (predicate is None or predicate(event)):
                        self._events.remove(event)
                        return event
                if self._closed_reason is not None:
                    raise BidiConnectionError(f"waiting for {method}: {self._closed_reason}")
                remaining = deadline - loop.time()
                if remaining <= 0:
                    seen = sorted({e.method for e in self._events})
                    raise BidiTimeoutError(
                        f"no {method} event matched within {timeout} s (buffered: {seen})"
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._event_added.wait(), remaining)

    def add_handler(self, method: str, handler: EventHandler) -> None:
        """Run `handler` for every later `method` event (those are then not buffered)."""
        self._handlers.setdefault(method, []).append(handler)

    def remove_handler(self, method: str, handler: EventHandler) -> None:
        """Undo :meth:`add_handler`; unknown handlers are ignored."""
        with contextlib.suppress(ValueError):
            self._handlers.get(method, []).remove(handler)

    def drain_events(self, method: str | None = None) -> list[BidiEvent]:
        """Remove and return buffered events (all, or those named `method`)."""
        taken = [e for e in self._events if method is None or e.method == method]
        for event in taken:
            self._events.remove(event)
        return taken

    async def close(self, timeout: float = 5.0) -> None:
        """Close the WebSocket; idempotent."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._ws.close(), timeout)
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader


# -- sync facade --


class BidiSession:
    """Blocking BiDi client: a private event loop in a daemon thread.

    Use as a context manager or call :meth:`close`. `timeout` is the default limit
    for each command; each method also takes its own.
    """

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = url
        self.timeout = timeout
        self.session_id: str | None = None
        self.capabilities: JsonDict = {}
        self._routes: dict[str, EventHandler] = {}
        self._network_subscribed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="bidi-loop", daemon=True
        )
        self._thread.start()
        try:
            self._client = self._run(AsyncBidiClient.connect(url, timeout), timeout)
        except BaseException:
            self._stop_loop()
            raise

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            # The coroutine enforces `timeout` itself; the margin covers scheduling.
            return future.result(timeout + 5.0)
        except TimeoutError as exc:
            future.cancel()
            raise BidiTimeoutError(f"BiDi call did not finish within {timeout} s") from exc

    def _stop_loop(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> BidiSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # generic

    def send(
        self, command: str, params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> JsonDict:
        """Send any BiDi command by name; returns its result object."""
        limit = self.timeout if timeout is None else timeout
        return self._run(self._client.send(command, params, limit), limit)

    # session

    def new_session(
        self, *, accept_insecure_certs: bool = False,
        extra_capabilities: Mapping[str, Any] | None = None, timeout: float | None = None,
    ) -> JsonDict:
        """session.new; returns the capabilities the browser granted."""
        always: JsonDict = {"acceptInsecureCerts": accept_insecure_certs}
        always.update(extra_capabilities or {})
        result = self.send("session.new", {"capabilities": {"alwaysMatch": always}}, timeout)
        self.session_id = result.get("sessionId")
        self.capabilities = result.get("capabilities") or {}
        return self.capabilities

    def end_session(self, timeout: float | None = None) -> None:
        """session.end. Firefox may close the socket instead of answering."""
        if self.session_id is None:
            return
        with contextlib.suppress(BidiConnectionError):
            self.send("session.end", {}, timeout)
        self.session_id = None

    def subscribe(
        self, events: Sequence[str], contexts: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> str | None:
        """session.subscribe; returns the subscription id (None on older browsers)."""
        params: JsonDict = {"events": list(events)}
        if contexts:
            params["contexts"] = list(contexts)
        return self.send("session.subscribe", params, timeout).get("subscription")

    def unsubscribe(self, subscription: str, timeout: float | None = None) -> None:
        """session.unsubscribe by subscription id."""
        self.send("session.unsubscribe", {"subscriptions": [subscription]}, timeout)

    def wait_for_event(
        self, method: str, predicate: Callable[[BidiEvent], bool] | None = None,
        timeout: float | None = None,
    ) -> BidiEvent:
        """Oldest buffered or next event named `method` that matches `predicate`."""
        limit = self.timeout if timeout is None else timeout
        return self._run(self._client.wait_for_event(method, predicate, limit), limit)

    def wait_for_channel_message(
        self, channel: str, timeout: float | None = None
    ) -> Any:
        """Wait for a script.message on `channel`; return its deserialized data.
        Requires a subscription to "script.message"."""
        event = self.wait_for_event(
            "script.message", lambda e: e.params.get("channel") == channel, timeout
        )
        return deserialize(event.params.get("data") or {"type": "undefined"})

    def drain_events(self, method: str | None = None) -> list[BidiEvent]:
        """Remove and return buffered events (all, or those named `method`)."""
        async def take() -> list[BidiEvent]:
            return self._client.drain_events(method)
        return self._run(take(), self.timeout)

    # network

    def route(self, routes: Sequence[Route], timeout: float | None = None) -> str:
        """Answer requests to these exact URLs with canned responses, without any
        network traffic (network.addIntercept at beforeRequestSent, then
        network.provideResponse from an event handler, so a pending navigation
        cannot deadlock the caller). Other requests continue untouched. Returns the
        intercept id for :meth:`unroute`. Requires no subscription of the caller."""
        by_url = {r.url: r for r in routes}
        intercept = str(self.send(
            "network.addIntercept",
            {"phases": ["beforeRequestSent"],
             "urlPatterns": [{"type": "string", "pattern": url} for url in by_url]},
            timeout,
        )["intercept"])

        async def answer(event: BidiEvent, client: AsyncBidiClient) -> None:
            params = event.params
            if not params.get("isBlocked") or intercept not in (params.get("intercepts") or []):
                return
            request = params["request"]
            found = by_url.get(str(request.get("url")))
            with contextlib.suppress(BidiError):
                if found is None:
                    await client.send("network.continueRequest", {"request": request["request"]})
                    return
                await client.send("network.provideResponse", {
                    "request": request["request"],
                    "statusCode": found.status,
                    "reasonPhrase": "OK" if found.status == 200 else "Canned",
                    "headers": [{"name": "Content-Type",
                                 "value": {"type": "string", "value": found.content_type}}],
                    "body": {"type": "string", "value": found.body},
                })

        self._routes[intercept] = answer
        self._run(self._add_handler("network.beforeRequestSent", answer), self.timeout)
        if not self._network_subscribed:
            self.subscribe(["network.beforeRequestSent"], timeout=timeout)
            self._network_subscribed = True
        return intercept

    def unroute(self, intercept: str, timeout: float | None = None) -> None:
        """Remove an intercept made by :meth:`route`."""
        handler = self._routes.pop(intercept, None)
        if handler is not None:
            self._run(self._remove_handler("network.beforeRequestSent", handler), self.timeout)
        self.send("network.removeIntercept", {"intercept": intercept}, timeout)

    async def _add_handler(self, method: str, handler: EventHandler) -> None:
        self._client.add_handler(method, handler)

    async def _remove_handler(self, method: str, handler: EventHandler) -> None:
        self._client.remove_handler(method, handler)

    # webExtension

    def install_extension(self, path: str, timeout: float | None = None) -> str:
        """webExtension.install from an unpacked folder (temporary install);
        returns the add-on id."""
        params = {"extensionData": {"type": "path", "path": str(path)}}
        return str(self.send("webExtension.install", params, timeout)["extension"])

    def install_extension_archive(self, path: str, timeout: float | None = None) -> str:
        """webExtension.install from an .xpi/.zip; returns the add-on id."""
        params = {"extensionData": {"type": "archivePath", "path": str(path)}}
        return str(self.send("webExtension.install", params, timeout)["extension"])

    def uninstall_extension(self, extension_id: str, timeout: float | None = None) -> None:
        """webExtension.uninstall."""
        self.send("webExtension.uninstall", {"extension": extension_id}, timeout)

    # browsingContext

    def get_tree(
        self, max_depth: int | None = None, timeout: float | None = None
    ) -> list[JsonDict]:
        """browsingContext.getTree; returns the top-level contexts."""
        params: JsonDict = {} if max_depth is None else {"maxDepth": max_depth}
        return list(self.send("browsingContext.getTree", params, timeout)["contexts"])

    def first_context(self, timeout: float | None = None) -> str:
        """Id of the first top-level browsing context (the initial tab)."""
        contexts = self.get_tree(0, timeout)
        if not contexts:
            raise BidiError("browsingContext.getTree returned no top-level context")
        return str(contexts[0]["context"])

    def create_context(
        self, kind: str = "tab", background: bool = False, timeout: float | None = None
    ) -> str:
        """browsingContext.create ("tab" or "window"); returns the context id."""
        params = {"type": kind, "background": background}
        return str(self.send("browsingContext.create", params, timeout)["context"])

    def navigate(
        self, context: str, url: str, wait: str = "complete", timeout: float | None = None
    ) -> JsonDict:
        """browsingContext.navigate, waiting for `wait` ("none", "interactive",
        "complete"); returns {navigation, url}."""
        params = {"context": context, "url": url, "wait": wait}
        return self.send("browsingContext.navigate", params, timeout)

    def reload(self, context: str, wait: str = "complete", timeout: float | None = None) -> None:
        """browsingContext.reload."""
        self.send("browsingContext.reload", {"context": context, "wait": wait}, timeout)

    def close_context(self, context: str, timeout: float | None = None) -> None:
        """browsingContext.close."""
        self.send("browsingContext.close", {"context": context}, timeout)

    # script

    def evaluate(
        self, expression: str, context: str, *, await_promise: bool = True,
        sandbox: str | None = None, user_activation: bool = False,
        timeout: float | None = None,
    ) -> Any:
        """script.evaluate in the page realm of `context` (or a named sandbox);
        returns the deserialized result; raises BidiScriptError if it throws."""
        params: JsonDict = {
            "expression": expression,
            "target": _target(context, sandbox),
            "awaitPromise": await_promise,
            "userActivation": user_activation,
        }
        return _script_result("script.evaluate", self.send("script.evaluate", params, timeout))

    def call_function(
        self, declaration: str, context: str, args: Iterable[Any] = (), *,
        await_promise: bool = True, sandbox: str | None = None,
        user_activation: bool = False, timeout: float | None = None,
    ) -> Any:
        """script.callFunction with Python `args` (see :func:`serialize`; a
        :class:`Channel` becomes a function that emits script.message)."""
        params: JsonDict = {
            "functionDeclaration": declaration,
            "target": _target(context, sandbox),
            "arguments": [serialize(a) for a in args],
            "awaitPromise": await_promise,
            "userActivation": user_activation,
        }
        result = self.send("script.callFunction", params, timeout)
        return _script_result("script.callFunction", result)

    def add_preload_script(
        self, declaration: str, args: Iterable[Any] = (),
        contexts: Sequence[str] | None = None, timeout: float | None = None,
    ) -> str:
        """script.addPreloadScript: run `declaration` in every new document before
        page scripts; args may hold :class:`Channel`. Returns the script id."""
        params: JsonDict = {
            "functionDeclaration": declaration,
            "arguments": [serialize(a) for a in args],
        }
        if contexts:
            params["contexts"] = list(contexts)
        return str(self.send("script.addPreloadScript", params, timeout)["script"])

    # teardown

    def close(self) -> None:
        """End the session (best effort), close the socket, stop the loop; idempotent."""
        if self._loop.is_closed():
            return
        if self.session_id is not None and self._loop.is_running():
            with contextlib.suppress(BidiError):
                self.end_session(timeout=3.0)
        if self._loop.is_running():
            with contextlib.suppress(BidiError):
                self._run(self._client.close(), 5.0)
        self._stop_loop()


def _target(context: str, sandbox: str | None) -> JsonDict:
    target: JsonDict = {"context": context}
    if sandbox is not None:
        target["sandbox"] = sandbox
    return target


def _script_result(command: str, result: Mapping[str, Any]) -> Any:
    if result.get("type") == "exception":
        details = result.get("exceptionDetails") or {}
        raise BidiScriptError(command, str(details.get("text", "?")), details)
    return deserialize(result.get("result") or {"type": "undefined"})
