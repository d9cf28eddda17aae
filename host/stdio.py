"""The I/O edge: the only module that touches stdin and stdout.

Start-up order matters for speed (docs/performance.md): the first reply needs only
the codec, the validator, the store and the state; the submitter (threads, HTTP,
TLS, the cipher) is imported and started after the first reply is written, or
after a short idle period when no request comes.

Stdout carries frames only: the real stdout is duplicated for frames at start, and
both file descriptor 1 and ``sys.stdout`` are pointed at stderr, so a stray print
or a C library write cannot corrupt the stream.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from _thread import allocate_lock

from flattr_host import caller as caller_mod
from flattr_host import config as config_mod
from flattr_host import framing
from flattr_host import messages as m
from flattr_host.errors import (
    CallerRefused,
    ConfigError,
    FrameTooLarge,
    InvalidFrame,
    RequestError,
    StoreError,
    TruncatedFrame,
)
from flattr_host.logs import Logger, redact

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_REFUSED = 2
EXIT_TOO_LARGE = 3

READ_SIZE = 65536
IDLE_START_S = 0.2  # start delivering even if no request comes within this time


class _Terminate(Exception):
    """SIGTERM arrived while the loop was waiting for input."""


class FrameWriter:
    """Writes frames to the browser from any thread, one whole frame at a time."""

    def __init__(self, fd: int, log: Logger) -> None:
        self._fd = fd
        self._log = log
        self._debug = log.enabled("debug")
        self._lock = allocate_lock()  # threading costs ~1 ms to import; this is the same lock
        self._last_state: dict[str, Any] | None = None
        self.broken = False

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def send(self, message: dict[str, Any]) -> None:
        """Encode and write ``message``; an oversized reply becomes an ``internal`` error."""
        try:
            data = framing.encode(message)
        except FrameTooLarge as exc:
            self._log.error("reply not sent: too large for the browser", error=str(exc),
                            id=message.get("id"))
            data = framing.encode(m.error(message.get("id"), m.INTERNAL, "internal error"))
        if self._debug:
            self._log.debug("frame out", message=redact(message))
        with self._lock:
            if self.broken:
                return
            try:
                self._write(data)
            except OSError as exc:
                self.broken = True
                self._log.warning("browser end of the pipe is gone", error=str(exc))

    def state(self, state: dict[str, Any]) -> None:
        """Push a state event unless it equals the last one pushed."""
        with self._lock:
            if state == self._last_state:
                return
            self._last_state = state
        self.send(m.state_event(state))


def _take_stdout() -> int:
    """Duplicate fd 1 for frames; point fd 1 and sys.stdout at stderr."""
    sys.stdout.flush()
    frames_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return frames_fd


def run(args: list[str]) -> int:
    """The message loop the browser starts; returns the process exit status."""
    frames_fd = _take_stdout()
    os.umask(0o077)  # every file the host creates is 0600, every directory 0700
    try:
        config = config_mod.load()
    except ConfigError as exc:
        sys.stderr.write(f"flattr-host: {exc}\n")
        return EXIT_FATAL
    log = Logger(config.log_dir, config.log_level, config.log_max_bytes, config.log_backups)
    log.hold()  # written after the first reply (or at exit): the reply goes first
    try:
        caller = caller_mod.identify(args, config.allowed_extensions)
    except CallerRefused as exc:
        log.error("caller refused", reason=str(exc))
        log.release()
        return EXIT_REFUSED
    log.info("started", caller=caller.family, extension_id=caller.extension_id,
             home=str(config.home))
    try:
        return Loop(config, log, frames_fd).run()
    finally:
        log.release()


class Loop:
    """Reads frames, answers them in order, and shuts down cleanly."""

    def __init__(self, config: config_mod.Config, log: Logger, frames_fd: int,
                 in_fd: int = 0) -> None:
        self._config = config
        self._log = log
        self._in_fd = in_fd
        self._writer = FrameWriter(frames_fd, log)
        self._debug = log.enabled("debug")
        self._handling = False
        self._terminate = False
        self._submitter: Any = None
        self._deferred_state: dict[str, Any] | None = None

    def _on_sigterm(self, _signum: int, _frame: Any) -> None:
        self._terminate = True
        if not self._handling:
            raise _Terminate

    def run(self) -> int:
        from flattr_host.service import Service
        from flattr_host.store import Store

        try:
            store = Store(self._config.db_path, self._log)
            # Requests wait for another process's write lock within the extension's
            # deadline, then get `busy` (docs/protocol.md#errors).
            store.bound_writes(self._config.store_wait_s)
        except (StoreError, OSError) as exc:
            self._log.exception("cannot open the store", exc)
            return EXIT_FATAL
        try:
            signal.signal(signal.SIGTERM, self._on_sigterm)
        except ValueError:  # not the main thread (in-process tests): no handler
            pass
        with store:
            self._service = Service(self._config, self._log, store, self._defer_state,
                                    waker=self)
            status = self._loop()
            self._shutdown()
        return status

    def _defer_state(self, state: dict[str, Any]) -> None:
        """State changed while handling a request: push it after the reply."""
        self._deferred_state = state

    def wake(self, debounce: bool = False) -> None:
        """Waker interface for the service: start the submitter and wake it."""
        self._start_submitter()
        self._submitter.wake(debounce=debounce)

    def _start_submitter(self) -> None:
        if self._submitter is not None:
            return
        from flattr_host.service import build_state
        from flattr_host.submitter import Submitter

        def on_change(store: Any, tokens: Any, queue: Any) -> None:
            from flattr_host.state import StateStore

            self._service.invalidate()
            self._writer.state(build_state(StateStore(store, tokens), queue, time.time()))

        self._submitter = Submitter(self._config, self._log, on_change)
        self._submitter.start()

    def _loop(self) -> int:
        try:
            return self._read_loop()
        except _Terminate:
            self._log.info("SIGTERM: shutting down")
            return EXIT_OK
        finally:
            self._handling = True  # a second SIGTERM during shutdown only sets the flag

    def _read_loop(self) -> int:
        decoder = framing.Decoder(self._config.max_inbound_frame)
        first = True
        while not self._terminate and not self._writer.broken:
            if first and self._submitter is None and not _readable(self._in_fd, IDLE_START_S):
                self._log.release()
                self._start_submitter()
            data = os.read(self._in_fd, READ_SIZE)
            if not data:
                try:
                    decoder.close()
                except TruncatedFrame as exc:
                    self._log.warning("input ended inside a frame", error=str(exc))
                self._log.info("input closed: shutting down")
                return EXIT_OK
            try:
                payloads = decoder.feed(data)
            except FrameTooLarge as exc:
                self._log.error("frame too large; cannot resynchronise, exiting", error=str(exc))
                self._writer.send(m.error(None, m.TOO_LARGE, str(exc)))
                return EXIT_TOO_LARGE
            for payload in payloads:
                self._handling = True
                try:
                    self._answer(payload)
                finally:
                    self._handling = False
            if first and payloads:
                first = False
                self._log.release()
                self._start_submitter()
                # -- live inspector hook ---------
                # Only when enabled, and only after the first reply: asyncio and
                # websockets stay off the hello path. It wraps self._writer.state to
                # see every state pushed to the browser.
                if self._config.inspect:
                    from flattr_host.inspector import start_for_host

                    start_for_host(self._config, self._log, self._writer)
                # -- end of the inspector hook ------------------------------------------
        if self._terminate:
            self._log.info("SIGTERM: shutting down")
        return EXIT_OK

    def _answer(self, payload: bytes) -> None:
        request_id: int | None = None
        try:
            message = framing.parse_payload(payload)
            request_id = m.read_id(message)
            if self._debug:
                self._log.debug("frame in", message=redact(message))
            request = m.parse_request(message)
            result = self._service.handle(request)
            reply = m.ok(request.id, result)
        except InvalidFrame as exc:
            self._log.warning("invalid frame", error=str(exc))
            reply = m.error(None, m.INVALID_REQUEST, str(exc))
        except RequestError as exc:
            # The value refused may be a URL or a site (browsing history): only at debug.
            self._log.warning("request refused", code=exc.code, error=exc.reason)
            if self._debug and exc.reason != exc.message:
                self._log.debug("request refused: the value", error=exc.message)
            reply = m.error(exc.request_id, exc.code, exc.message)
        except Exception as exc:
            self._log.exception("internal error while handling a request", exc, id=request_id)
            reply = m.error(request_id, m.INTERNAL, "internal error; see the host log")
        self._writer.send(reply)
        if self._deferred_state is not None:
            state, self._deferred_state = self._deferred_state, None
            self._writer.state(state)

    def _shutdown(self) -> None:
        # -- attention hook: save accrued attention, stop its timer ----------
        self._service.close()
        # -- end of the attention hook ----------------------------------------------------
        if self._submitter is not None:
            clean = self._submitter.stop(self._config.exit_grace_s)
            if not clean:
                self._log.warning("a request was still in flight at exit; its lease will expire "
                                  "and the next host sends it again")
        self._log.info("stopped")


def _readable(fd: int, timeout: float) -> bool:
    """True if ``fd`` has input (or EOF) within ``timeout``; True where unknowable."""
    if os.name != "posix":
        return True
    import select

    ready, _, _ = select.select([fd], [], [], timeout)
    return bool(ready)
