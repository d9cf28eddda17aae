"""A native messaging port to a child process, as a browser holds one.

Frames are a 4-byte unsigned length in native byte order, then UTF-8 JSON
(docs/protocol.md). The child's stdin and stdout are raw pipes; reads wait with
``select`` and a deadline so a hung host fails the figure instead of the run.
Stderr goes to a file so a chatty host can never block on a full pipe.
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import select
import struct
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.model import BenchError

HEADER = struct.Struct("=I")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def encode(message: Mapping[str, Any]) -> bytes:
    """One frame holding ``message`` as compact UTF-8 JSON."""
    body = json.dumps(message, separators=(",", ":")).encode()
    return HEADER.pack(len(body)) + body


class Port:
    """A spawned child speaking frames over its stdio.

    ``spawned_at`` is the ``perf_counter`` just before the process was created,
    so ``cold start = reply time - spawned_at`` counts fork, exec, interpreter
    start-up, imports and the first reply, like Chrome's connectNative.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        stderr_path: Path,
        timeout_s: float = 60.0,
    ) -> None:
        self.argv = list(argv)
        self.timeout_s = timeout_s
        self.stderr_path = stderr_path
        self._stderr = stderr_path.open("ab")
        #: Where this process's stderr starts in the file (hosts on one data
        #: directory share it, appending).
        self.stderr_offset = self._stderr.tell()
        self._buffer = bytearray()
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []
        self.rusage: resource.struct_rusage | None = None
        self.spawned_at = time.perf_counter()
        self.proc = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            bufsize=0,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in = self.proc.stdin.fileno()
        self._out = self.proc.stdout.fileno()

    # -- frames -------------------------------------------------------------

    def send(self, message: Mapping[str, Any]) -> None:
        """Write one frame to the child's stdin."""
        self.send_raw(encode(message))

    def send_raw(self, data: bytes) -> None:
        """Write pre-encoded frames (all of ``data``) to the child's stdin."""
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._in, view)
            except BrokenPipeError as exc:
                raise BenchError(f"host closed its stdin early: {self.describe_exit()}") from exc
            view = view[written:]

    def recv(self, timeout_s: float | None = None) -> dict[str, Any]:
        """Read the next frame (reply or event) from the child's stdout."""
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        self._fill(HEADER.size, deadline)
        (length,) = HEADER.unpack_from(self._buffer)
        self._fill(HEADER.size + length, deadline)
        body = bytes(self._buffer[HEADER.size : HEADER.size + length])
        del self._buffer[: HEADER.size + length]
        message = json.loads(body)
        if not isinstance(message, dict):
            raise BenchError(f"frame is not a JSON object: {body[:80]!r}")
        return message

    def has_frame(self) -> bool:
        """True when a whole frame is already read (``recv`` returns it at once)."""
        if len(self._buffer) < HEADER.size:
            return False
        (length,) = HEADER.unpack_from(self._buffer)
        return len(self._buffer) >= HEADER.size + length

    def _fill(self, size: int, deadline: float) -> None:
        while len(self._buffer) < size:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(
                    f"no frame from {self.argv[0]} within {self.timeout_s:.0f} s "
                    f"(have {len(self._buffer)} of {size} bytes); {self.stderr_tail()}"
                )
            ready, _, _ = select.select([self._out], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._out, 1 << 16)
            if not chunk:
                raise BenchError(f"host closed stdout: {self.describe_exit()}")
            self._buffer += chunk

    # -- requests -----------------------------------------------------------

    def next_id(self) -> int:
        """A fresh request id."""
        return next(self._ids)

    def reply_to(self, request_id: int, timeout_s: float | None = None) -> dict[str, Any]:
        """Read frames until the reply to ``request_id``; events are kept in ``events``."""
        while True:
            message = self.recv(timeout_s)
            if "event" in message and "id" not in message:
                self.events.append(message)
                continue
            if message.get("id") != request_id:
                raise BenchError(f"reply id {message.get('id')!r}, expected {request_id}")
            return message

    def request(self, type_: str, **fields: Any) -> dict[str, Any]:
        """Send one request, wait for its reply, return ``result``; errors raise."""
        request_id = self.next_id()
        self.send({"id": request_id, "type": type_, **fields})
        reply = self.reply_to(request_id)
        if reply.get("ok") is not True:
            raise BenchError(f"{type_} failed: {reply.get('error')!r}")
        result = reply.get("result")
        if not isinstance(result, dict):
            raise BenchError(f"{type_} result is not an object: {result!r}")
        return result

    def wait_event(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float | None = None
    ) -> dict[str, Any]:
        """Return the first state event (already seen or next) matching ``predicate``."""
        for event in self.events:
            if predicate(event):
                return event
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                last = self.events[-1] if self.events else None
                raise BenchError(f"no matching event within the deadline; last event: {last!r}")
            message = self.recv(left)
            if "event" not in message:
                raise BenchError(f"unexpected reply while waiting for an event: {message!r}")
            self.events.append(message)
            if predicate(message):
                return message

    # -- process ------------------------------------------------------------

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time the live child has used so far (from /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        # After the command name: state is field 3; utime and stime are 14 and 15.
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK

    def peak_rss_kib(self) -> int:
        """Peak resident set size so far of the live child (VmHWM, /proc).

        Not ``ru_maxrss`` from wait4: on Linux it includes the peak of the image
        before exec, i.e. the forked harness, and so reports the harness's size.
        """
        if self.proc.returncode is not None:
            raise BenchError(f"pid {self.pid} has exited; its peak RSS is gone")
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise BenchError(f"no VmHWM in /proc/{self.pid}/status")

    def close(self, timeout_s: float = 10.0) -> int:
        """Close stdin (EOF, as the browser does), reap the child, return its status.

        The child's own rusage (wait4) is kept in ``rusage``. A child still alive
        after ``timeout_s`` is killed and a BenchError raised.
        """
        if self.proc.returncode is not None:
            return self.proc.returncode
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            except ChildProcessError:  # already reaped by Popen.poll()
                break
            if pid:
                self.rusage = usage
                self.proc.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise BenchError(f"{self.argv[0]} did not exit within {timeout_s} s of EOF")
            time.sleep(0.005)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._stderr.close()
        return self.proc.returncode

    def kill(self) -> None:
        """Kill the child if it is still running (used on error paths)."""
        if self.proc.returncode is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        self._stderr.close()

    def describe_exit(self) -> str:
        """Exit status (if any) and the end of stderr, for error messages."""
        code = self.proc.poll()
        return f"exit status {code}; {self.stderr_tail()}"

    def stderr_tail(self, limit: int = 600) -> str:
        """The last ``limit`` characters of the child's stderr."""
        self._stderr.flush()
        try:
            text = self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return "stderr: (none)"
        return f"stderr: {text[-limit:].strip() or '(empty)'}"

    def __enter__(self) -> Port:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self.kill()
        elif self.proc.returncode is None:
            self.close()
