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

# The C module: the signal module on top of it builds its enums (Signals, Handlers),
# about 0.6 ms of start-up, for nothing the loop needs (docs/performance.md).
import _signal  # type: ignore[import-not-found]  # no stub; signal.signal's twin
import os
import sys
import time
from _thread import allocate_lock

from flattr_host.core import config as config_mod
from flattr_host.core import health
from flattr_host.core.errors import (
    CallerRefused,
    ConfigError,
    FrameTooLarge,
    InvalidFrame,
    RequestError,
    StoreError,
    TruncatedFrame,
)
from flattr_host.core.logs import Logger, preview
from flattr_host.protocol import framing
from flattr_host.protocol import messages as m
from flattr_host.runtime import caller as caller_mod

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_REFUSED = 2
EXIT_TOO_LARGE = 3

READ_SIZE = 65536
IDLE_START_S = 0.2  # start delivering even if no request comes within this time

# A group of flattr requests committed together closes at this many URLs or bytes of
# frames: at raw insert speed 10,000 rows hold the write lock for tens of ms (other
# processes wait up to store_wait_s, 2 s), the first reply of a group waits only for
# that and for parsing the rest, and the frames held stay near one inbound frame's
# limit (docs/architecture.md, "Group commit").
GROUP_MAX_URLS = 10_000  # also the most requests (refusals included) in a group
GROUP_MAX_BYTES = 1024 * 1024
HEADER_SIZE = framing.HEADER.size


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
        self._state_listeners: tuple[Callable[[dict[str, Any]], None], ...] = ()
        # The last reply's result and its JSON: the service hands out one State
        # object while nothing changed (results are never mutated once returned).
        self._last_result: tuple[object, bytes] | None = None
        self.broken = False

    def add_state_listener(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Call ``listener(state)`` after each state event is sent (the live inspector).

        It runs on the sending thread, outside the writer's lock; an exception it
        raises is logged and never reaches the sender.
        """
        self._state_listeners = (*self._state_listeners, listener)

    @property
    def last_state(self) -> dict[str, Any] | None:
        """The last state pushed (None before the first)."""
        return self._last_state

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def send_ok(self, request_id: int, result: dict[str, Any]) -> None:
        """Send the success reply ``messages.ok(request_id, result)``, like :meth:`send`.

        When ``result`` is the very object of the previous success reply (the
        service's unchanged State), its encoded JSON is reused: a ``get-state``
        then costs no encoding (docs/performance.md, round trip).
        """
        last = self._last_result
        try:
            if last is not None and last[0] is result:
                text = last[1]
            else:
                text = framing.encode_json(result)
                self._last_result = (result, text)
            data = framing.encode_ok(request_id, text)
        except Exception:
            self.send(m.ok(request_id, result))  # the same failure, reported by send()
            return
        if self._debug:
            self._log_out(m.ok(request_id, result), data)
        self._put(data)

    def send(self, message: dict[str, Any]) -> None:
        """Encode and write ``message``; a reply that cannot be sent becomes ``internal``.

        Too large for the browser, or not encodable at all (text that is not
        UTF-8): the reply is replaced by an ``internal`` error with the same id,
        an event is dropped; either way the reason is logged and nothing raises.
        """
        try:
            data = framing.encode(message)
        except Exception as exc:
            is_reply = "id" in message
            what = "reply" if is_reply else "event"
            if isinstance(exc, FrameTooLarge):
                self._log.error(f"{what} not sent: too large for the browser", error=str(exc),
                                id=message.get("id"))
            else:
                self._log.exception(f"{what} not sent: it cannot be encoded", exc,
                                    id=message.get("id"))
            if not is_reply:
                return
            data = framing.encode(m.error(message.get("id"), m.INTERNAL,
                                          "internal error; see the host log"))
        if self._debug:
            self._log_out(message, data)
        self._put(data)

    def _log_out(self, message: dict[str, Any], data: bytes) -> None:
        shown, cut = preview(message)
        self._log.debug("frame out", bytes=len(data) - framing.HEADER.size, message=shown,
                        truncated=cut)

    def _put(self, data: bytes) -> None:
        with self._lock:
            if self.broken:
                return
            try:
                self._write(data)
            except OSError as exc:
                self.broken = True
                self._log.warning("browser end of the pipe is gone", error=str(exc))

    def state(self, state: dict[str, Any]) -> None:
        """Push a state event unless it equals the last one pushed.

        The problem shown is this process's current one (a thread may have
        stopped or run again since ``state`` was read; docs/protocol.md#state).
        """
        current = health.PROCESS.current()
        shown = state.get("problem")
        if current is not None and shown is not current:
            state = {**state, "problem": current}
        elif current is None and shown is not None and "component" in shown:
            state = {**state, "problem": None}  # that thread runs again
        with self._lock:
            if state == self._last_state:
                return
            self._last_state = state
        self.send(m.state_event(state))
        for listener in self._state_listeners:
            try:
                listener(state)
            except Exception as exc:
                self._log.exception("a state listener failed", exc)


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
        self._submitter_failed = False
        self._store: Any = None
        self._deferred_state: dict[str, Any] | None = None
        self._input_ended = False  # EOF read while a group looked for more input

    def _on_sigterm(self, _signum: int, _frame: Any) -> None:
        self._terminate = True
        if not self._handling:
            raise _Terminate

    def run(self) -> int:
        from flattr_host.runtime.service import Service
        from flattr_host.storage.parts import open_store

        try:
            store = open_store(self._config, self._log)
            # Requests wait for another process's write lock within the extension's
            # deadline, then get `busy` (docs/protocol.md#errors).
            store.bound_writes(self._config.store_wait_s)
        except (StoreError, OSError) as exc:
            self._log.exception("cannot open the store", exc)
            return EXIT_FATAL
        try:
            _signal.signal(_signal.SIGTERM, self._on_sigterm)
        except ValueError:  # not the main thread (in-process tests): no handler
            pass
        self._store = store
        health.PROCESS.attach(self._config.home)
        health.PROCESS.add_listener(self._problem_changed)
        with store:
            self._service = Service(self._config, self._log, store, self._defer_state,
                                    waker=self)
            try:
                status = self._loop()
                self._shutdown()
            finally:
                health.PROCESS.reset()
        return status

    def _problem_changed(self, problem: dict[str, Any] | None) -> None:
        """A thread stopped or runs again (any thread): tell the browser at once."""
        last = self._writer.last_state
        if last is None:
            return  # the next reply carries the state
        shown = last.get("problem")
        if problem is None and shown is not None and "component" not in shown:
            problem = shown  # the store's note stays (thread problems have a component)
        if shown is not problem:
            self._writer.state({**last, "problem": problem})

    def _store_error(self, exc: BaseException) -> None:
        """After a request failed: a damaged store is replaced (docs/protocol.md#state)."""
        from flattr_host.storage.store import is_corruption_error

        if not is_corruption_error(exc):
            return
        from flattr_host.storage import recovery

        try:
            recovery.recover(self._store, self._log, exc)
        except Exception as failure:
            self._log.exception("replacing the damaged store failed", failure)
            return
        self._service.invalidate()
        try:
            self._deferred_state = self._service.state()
        except Exception as failure:
            self._log.exception("reading the state after replacing the store failed",
                                failure)

    def _defer_state(self, state: dict[str, Any]) -> None:
        """State changed while handling a request: push it after the reply."""
        self._deferred_state = state

    def wake(self, debounce: bool = False) -> None:
        """Waker interface for the service: start the submitter and wake it."""
        self._start_submitter()
        if self._submitter is not None:
            self._submitter.wake(debounce=debounce)

    def _start_submitter(self) -> None:
        """Start delivery once; a submitter that cannot even start is reported, and
        the host goes on answering (the queue keeps what it is given)."""
        if self._submitter is not None or self._submitter_failed:
            return
        try:
            self._make_submitter()
        except Exception as exc:
            self._submitter_failed = True
            self._log.exception("the submitter cannot start; delivery stopped", exc)
            health.PROCESS.report("submitter", "delivery_stopped",
                                  f"delivery stopped: the submitter cannot start "
                                  f"({type(exc).__name__}: {str(exc)[:300]})")

    def _make_submitter(self) -> None:
        from flattr_host.delivery.submitter import Submitter
        from flattr_host.runtime.service import build_state

        def on_change(parts: Any) -> None:
            self._service.invalidate()
            self._writer.state(build_state(parts, time.time()))

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
                return self._input_closed(decoder)
            try:
                payloads = decoder.feed(data)
            except FrameTooLarge as exc:
                return self._too_large(exc)
            self._handling = True
            try:
                answered = self._answer_all(payloads, decoder)
            finally:
                self._handling = False
            if self._input_ended:  # seen while a group looked for more input
                return self._input_closed(decoder)
            if decoder.broken is not None:
                # The requests complete before the bad header have their replies.
                return self._too_large(decoder.broken)
            if first and answered:
                first = False
                self._log.release()
                self._start_submitter()
                # Only when enabled, and only after the first reply: asyncio and
                # websockets stay off the hello path. It listens to the writer's
                # states through add_state_listener.
                if self._config.inspect:
                    from flattr_host.runtime.inspector import start_for_host

                    start_for_host(self._config, self._log, self._writer)
        if self._terminate:
            self._log.info("SIGTERM: shutting down")
        return EXIT_OK

    def _input_closed(self, decoder: framing.Decoder) -> int:
        try:
            decoder.close()
        except TruncatedFrame as exc:
            self._log.warning("input ended inside a frame", error=str(exc))
        self._log.info("input closed: shutting down")
        return EXIT_OK

    def _too_large(self, exc: FrameTooLarge) -> int:
        self._log.error("frame too large; cannot resynchronise, exiting", error=str(exc))
        self._writer.send(m.error(None, m.TOO_LARGE, str(exc)))
        return EXIT_TOO_LARGE

    def _answer_all(self, payloads: list[bytes], decoder: framing.Decoder) -> int:
        """Answer ``payloads`` in order, grouping runs of ``flattr`` requests.

        A group is a run of consecutive ``flattr`` (non-manual) requests: those of
        this read and, when the run reaches the end of them, whatever more input is
        readable now (never waiting for it). It is committed in one transaction and
        only then answered, each request with its own reply, in order; one state
        event follows (docs/architecture.md, "Group commit"). A request refused
        while a group is open keeps its place: its error reply is sent between the
        group's replies. Any other request ends the group. A group closes at
        :data:`GROUP_MAX_URLS` URLs or requests, or :data:`GROUP_MAX_BYTES` bytes of
        frames (refusals count, so a flood of bad frames cannot hold it open).
        Returns how many payloads were answered (more than given when it read more).
        """
        group: list[tuple[int, m.FlattrUrls] | dict[str, Any]] = []  # requests, refusals
        urls = size = index = 0
        while True:
            if index == len(payloads):
                if group and self._read_more(payloads, decoder):
                    continue
                break
            payload = payloads[index]
            index += 1
            parsed = self._parse(payload)
            if isinstance(parsed, dict):  # refused: its error reply
                if not group:
                    self._writer.send(parsed)
                    continue
                group.append(parsed)  # keeps its place among the group's replies
            elif isinstance(parsed.body, m.FlattrUrls):
                group.append((parsed.id, parsed.body))
                urls += len(parsed.body.urls)
            else:  # any other request ends the group
                if group:
                    self._guarded(self._commit_group, group)
                    group, urls, size = [], 0, 0
                self._guarded(self._respond, parsed)
                continue
            size += HEADER_SIZE + len(payload)
            if (urls >= GROUP_MAX_URLS or len(group) >= GROUP_MAX_URLS
                    or size >= GROUP_MAX_BYTES):
                self._guarded(self._commit_group, group)
                group, urls, size = [], 0, 0
        if group:
            self._guarded(self._commit_group, group)
        return index

    def _read_more(self, payloads: list[bytes], decoder: framing.Decoder) -> bool:
        """Append to ``payloads`` the frames completed by input readable right now;
        False when there are none (nothing readable, input ended, or a bad header)."""
        while (not self._terminate and not self._writer.broken and decoder.broken is None
               and not self._input_ended and _readable(self._in_fd, 0, unknowable=False)):
            try:
                data = os.read(self._in_fd, READ_SIZE)
            except OSError:
                return False  # answer the group first; the loop's next read reports it
            if not data:
                self._input_ended = True
                return False
            try:
                more = decoder.feed(data)
            except FrameTooLarge:
                return False  # decoder.broken: the loop exits after the group's replies
            if more:
                payloads.extend(more)
                return True
        return False

    def _guarded(self, answer: Callable[[Any], None], item: Any) -> None:
        try:
            answer(item)
        except Exception as exc:  # the last line: one request never ends the host
            self._log.exception("internal error after handling a request", exc)

    def _parse(self, payload: bytes) -> m.Request | dict[str, Any]:
        """The request in ``payload``, or the error reply that refuses it."""
        request_id: int | None = None
        try:
            message = framing.parse_payload(payload)
            request_id = m.read_id(message)
            if self._debug:
                shown, cut = preview(message)
                self._log.debug("frame in", bytes=len(payload), message=shown, truncated=cut)
            return m.parse_request(message, payload)
        except InvalidFrame as exc:
            self._log.warning("invalid frame", error=str(exc))
            return m.error(None, m.INVALID_REQUEST, str(exc))
        except RequestError as exc:
            self._refused(exc)
            return m.error(exc.request_id, exc.code, exc.message)
        except Exception as exc:
            self._log.exception("internal error while reading a request", exc, id=request_id)
            return m.error(request_id, m.INTERNAL, "internal error; see the host log")

    def _refused(self, exc: RequestError, count: int = 1) -> None:
        # The value refused may be a URL or a site (browsing history): only at debug.
        if count == 1:
            self._log.warning("request refused", code=exc.code, error=exc.reason)
        else:
            self._log.warning("requests refused", code=exc.code, error=exc.reason, count=count)
        if self._debug and exc.reason != exc.message:
            self._log.debug("request refused: the value", error=exc.message)

    def _respond(self, request: m.Request) -> None:
        """Answer one request (not a flattr group); then push the state it changed."""
        try:
            result = self._service.handle(request)
        except RequestError as exc:
            self._refused(exc)
            self._writer.send(m.error(exc.request_id, exc.code, exc.message))
        except Exception as exc:
            self._log.exception("internal error while handling a request", exc, id=request.id)
            self._writer.send(m.error(request.id, m.INTERNAL, "internal error; see the host log"))
            self._store_error(exc)
        else:
            self._writer.send_ok(request.id, result)
        self._push_deferred_state()

    def _commit_group(self, group: list[tuple[int, m.FlattrUrls] | dict[str, Any]]) -> None:
        """Commit the group's flattr requests in one transaction, then send every
        reply of the group in order, then the state once.

        No reply is written before the commit returned; a failed commit is answered
        for each request as a lone request's would be (``busy``: nothing stored;
        damage: ``internal``, then the store is replaced, docs/protocol.md#state).
        """
        requests = [item for item in group if not isinstance(item, dict)]
        results: list[dict[str, Any]] | None = None
        failure: dict[str, Any] | None = None
        try:
            results = self._service.handle_flattrs([body for _, body in requests])
        except RequestError as exc:
            self._refused(exc, len(requests))
            failure = {"code": exc.code, "message": exc.message}
        except Exception as exc:
            self._log.exception("internal error while handling a request", exc,
                                id=requests[0][0], requests=len(requests))
            failure = {"code": m.INTERNAL, "message": "internal error; see the host log"}
            self._store_error(exc)
        done = iter(results or ())
        for item in group:
            if isinstance(item, dict):
                self._writer.send(item)
            elif failure is not None:
                self._writer.send(m.error(item[0], failure["code"], failure["message"]))
            else:
                self._writer.send_ok(item[0], next(done))
        self._push_deferred_state()

    def _push_deferred_state(self) -> None:
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


def _readable(fd: int, timeout: float, unknowable: bool = True) -> bool:
    """True if ``fd`` has input (or EOF) within ``timeout`` (0: now, without waiting);
    ``unknowable`` where select cannot tell (not POSIX)."""
    if os.name != "posix":
        return unknowable
    import select

    ready, _, _ = select.select([fd], [], [], timeout)
    return bool(ready)
