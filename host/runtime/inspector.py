"""The live inspector's server: a read-only WebSocket view into a running host.

The client, ``flattr-host inspect``, is :mod:`flattr_host.tools.inspect_client`.

Off by default; on with ``"inspect": true`` in config.json or ``FLATTR_INSPECT=1``.
The message loop starts it after its first reply (so neither asyncio nor
websockets is on the path to ``hello``); it runs its own event loop in a daemon
thread and listens on 127.0.0.1 only, on a random port written to
``<home>/inspect/<pid>.json`` (0600; removed at exit).

Access control, in order:

1. A request carrying an ``Origin`` header is refused (403). Browsers always send
   one on a WebSocket handshake, so no web page can read the inspector, even one
   that knows the port and the secret.
2. The request must carry the secret from ``<home>/inspect.secret`` (random, 0600,
   created once) in the ``X-Flattr-Inspect-Secret`` header, or it is refused (401).
   Only the user who owns the data directory can read it.

A connected client gets ``{"type": "hello", ...}`` with the current state, then
``{"type": "log", "record": ...}`` for every log record (already redacted and
scrubbed by the logger) and ``{"type": "state", "state": ...}`` for every state
the host pushes to the browser. It may send ``{"id": N, "query": "state"}`` or
``{"id": N, "query": "queue"}``; nothing it sends can change anything. No token is
ever read here: the state holds only ``authenticated``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flattr_host import __version__
from flattr_host.core import health, supervise
from flattr_host.core.config import Config
from flattr_host.core.logs import Logger, redact

SECRET_FILE = "inspect.secret"  # noqa: S105 - a file name
DISCOVERY_DIR = "inspect"
SECRET_HEADER = "X-Flattr-Inspect-Secret"  # noqa: S105 - a header name
CLIENT_QUEUE = 1000  # events buffered per client; a client that falls behind loses events
MAX_QUERY = 4096  # bytes; queries are tiny
START_TIMEOUT_S = 5.0
#: A server that failed after it had started is started again after this backoff.
RESTART_BASE_S = 1.0
RESTART_CAP_S = 300.0

_started: list[Inspector] = []  # the one inspector of this process, kept alive


def load_or_create_secret(home: Path) -> str:
    """The inspector secret (created 0600 on first use, safely across processes)."""
    path = home / SECRET_FILE
    for _ in range(3):
        try:
            text = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            text = ""
        if len(text) >= 32:
            return text
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = home / f".{SECRET_FILE}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, secrets.token_urlsafe(32).encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            if text:  # too short: someone wrote it by hand; replace it
                os.replace(tmp, path)
            else:
                os.link(tmp, path)  # fails if another process won the race
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    raise OSError(f"{path}: cannot create a usable inspector secret")


def read_secret(home: Path) -> str | None:
    try:
        return (home / SECRET_FILE).read_text(encoding="ascii").strip() or None
    except OSError:
        return None


class Inspector:
    """The server side. ``query(name)`` answers read-only queries on the server thread."""

    def __init__(self, home: Path, log: Logger, query: Callable[[str], dict[str, Any]]) -> None:
        self._home = home
        self._log = log
        self._query = query
        self._secret = load_or_create_secret(home)
        self._clients: set[asyncio.Queue[str]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_state: dict[str, Any] | None = None
        self._state_lock = threading.Lock()
        self.port: int | None = None
        self.refused = 0
        self.discovery = home / DISCOVERY_DIR / f"{os.getpid()}.json"

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> int:
        """Start serving; returns the port. Raises OSError if the server cannot start."""
        self._thread = threading.Thread(target=self._run, name="flattr-inspector", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S) or self.port is None:
            raise OSError("the inspector did not start within "
                          f"{START_TIMEOUT_S:g} s")
        self._log.add_listener(self._on_record)
        return self.port

    def stop(self) -> None:
        self._halt.set()
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(2.0)
        self.discovery.unlink(missing_ok=True)

    def _run(self) -> None:
        """The server thread. A server that fails after it started is started again
        with backoff (the discovery file goes meanwhile, the state's problem says so);
        one that never started is reported by :meth:`start`.
        """
        restarts = supervise.Restarts("inspector", "inspector_stopped", "inspector",
                                      "the live inspector", self._log, RESTART_BASE_S,
                                      RESTART_CAP_S)
        while not self._halt.is_set():
            try:
                asyncio.run(self._serve())
                return
            except Exception as exc:
                self.discovery.unlink(missing_ok=True)
                if self.port is None:
                    self._log.exception("inspector stopped", exc)
                    return
                self._halt.wait(restarts.failed(exc))
            finally:
                self._ready.set()

    async def _serve(self) -> None:
        from websockets.asyncio.server import serve

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(self._handler, "127.0.0.1", 0, process_request=self._check,
                         max_size=MAX_QUERY, server_header=None) as server:
            self.port = int(next(iter(server.sockets)).getsockname()[1])
            self._write_discovery()
            health.PROCESS.resolve("inspector")
            self._ready.set()
            await self._stop.wait()

    def _write_discovery(self) -> None:
        folder = self.discovery.parent
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = folder / f".{self.discovery.name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"pid": os.getpid(), "port": self.port, "version": __version__,
                       "started": time.time()}, handle)
        os.replace(tmp, self.discovery)

    # -- access control --------------------------------------------------------------

    def _check(self, connection: Any, request: Any) -> Any:
        from http import HTTPStatus

        headers = request.headers
        if "Origin" in headers:
            self.refused += 1
            self._log.warning("inspector refused a connection carrying an Origin header",
                              origin=str(headers.get("Origin"))[:200])
            return connection.respond(HTTPStatus.FORBIDDEN, "Origin header not allowed\n")
        given = str(headers.get(SECRET_HEADER, ""))
        if not hmac.compare_digest(given.encode(), self._secret.encode()):
            self.refused += 1
            self._log.warning("inspector refused a connection without the right secret",
                              had_secret=bool(given))
            return connection.respond(HTTPStatus.UNAUTHORIZED, "secret required\n")
        return None

    # -- events ----------------------------------------------------------------------

    def _on_record(self, record: dict[str, Any]) -> None:
        """Logger listener: any thread."""
        self._publish({"type": "log", "record": record})

    def publish_state(self, state: dict[str, Any]) -> None:
        """A state the host pushed to the browser: any thread; repeated states are dropped."""
        with self._state_lock:
            if state == self._last_state:
                return
            self._last_state = state
        self._publish({"type": "state", "state": state})

    def _publish(self, event: dict[str, Any]) -> None:
        loop = self._loop
        if loop is None or not self._clients:
            return
        text = json.dumps(redact(event), default=str)
        with contextlib.suppress(RuntimeError):  # loop closed at exit
            loop.call_soon_threadsafe(self._fan_out, text)

    def _fan_out(self, text: str) -> None:
        for queue in list(self._clients):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(text)

    async def _handler(self, connection: Any) -> None:
        queue: asyncio.Queue[str] = asyncio.Queue(CLIENT_QUEUE)
        hello = {"type": "hello", "pid": os.getpid(), "host": {"version": __version__},
                 "state": self._safe_query("state")}
        queue.put_nowait(json.dumps(redact(hello), default=str))
        self._clients.add(queue)
        self._log.info("inspector client connected", clients=len(self._clients))
        sender = asyncio.create_task(self._pump(connection, queue))
        try:
            async for raw in connection:
                queue.put_nowait(json.dumps(redact(self._answer(raw)), default=str))
        except Exception:  # noqa: S110 - a client going away is not an error
            pass
        finally:
            self._clients.discard(queue)
            sender.cancel()

    async def _pump(self, connection: Any, queue: asyncio.Queue[str]) -> None:
        while True:
            await connection.send(await queue.get())

    def _safe_query(self, name: str) -> dict[str, Any]:
        try:
            return self._query(name)
        except Exception as exc:
            self._log.exception("inspector query failed", exc, query=name)
            return {"error": "query failed; see the host log"}

    def _answer(self, raw: str | bytes) -> dict[str, Any]:
        try:
            message = json.loads(raw)
            request_id = message.get("id")
            name = message.get("query")
        except (ValueError, AttributeError):
            return {"type": "error", "id": None, "error": "expected {\"id\": N, \"query\": NAME}"}
        if name not in ("state", "queue"):
            return {"type": "error", "id": request_id,
                    "error": f"unknown query {str(name)[:50]!r} (known: state, queue)"}
        return {"type": "result", "id": request_id, "query": name,
                "result": self._safe_query(name)}


def _host_queries(config: Config, log: Logger) -> Callable[[str], dict[str, Any]]:
    """Read-only queries over this thread's own store connection."""
    from flattr_host.runtime.service import build_state
    from flattr_host.storage.parts import Parts, build, open_store

    opened: list[Parts] = []

    def query(name: str) -> dict[str, Any]:
        if not opened:
            opened.append(build(config, open_store(config, log), log))
        parts = opened[0]
        if name == "queue":
            counts: dict[str, Any] = parts.queue.counts()
            return counts
        state: dict[str, Any] = build_state(parts, time.time())
        return state

    return query


def start_for_host(config: Config, log: Logger, writer: Any) -> Inspector | None:
    """Start the inspector for the message loop; it listens to the states ``writer``
    pushes (``FrameWriter.add_state_listener``).

    Never raises: a host without its inspector still serves the browser.
    """
    if _started:
        return _started[0]
    try:
        inspector = Inspector(Path(config.home), log, _host_queries(config, log))
        port = inspector.start()
    except Exception as exc:
        log.exception("inspector not started", exc)
        return None
    writer.add_state_listener(inspector.publish_state)
    _started.append(inspector)
    atexit.register(inspector.stop)
    log.info("inspector listening", address=f"127.0.0.1:{port}")
    return inspector
