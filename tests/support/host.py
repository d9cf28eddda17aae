"""Start ``flattr-host`` exactly as a browser does and speak frames to it.

A browser runs the manifest's launcher with the extension origin as argv[1] and the
launcher's folder as the working directory; :func:`install_launcher` writes the
real launcher with the real installer, and :class:`HostProcess` spawns it.
"""

from __future__ import annotations

import json
import os
import select
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM_ID = "jimjcpbicodoomdmhndojmkjllmolafb"
ORIGIN = f"chrome-extension://{CHROMIUM_ID}/"
HEADER = struct.Struct("=I")


def install_launcher(profile_dir: Path, home: Path) -> Path:
    """Run the real ``flattr-host install`` into ``profile_dir``; return the launcher path."""
    env = {**os.environ, "FLATTR_HOST_HOME": str(home)}
    subprocess.run(
        [sys.executable, "-m", "flattr_host", "install", "--browser", "chromium",
         "--user-data-dir", str(profile_dir)],
        check=True, env=env, capture_output=True,
    )
    manifest = json.loads((profile_dir / "NativeMessagingHosts" / "com.flattr.companion.json")
                          .read_text())
    return Path(manifest["path"])


def frame(message: dict[str, Any] | bytes) -> bytes:
    data = message if isinstance(message, bytes) else json.dumps(message).encode()
    return HEADER.pack(len(data)) + data


class HostProcess:
    """A running host; read replies and events with :meth:`recv`."""

    def __init__(self, launcher: Path, home: Path, args: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        full_env = {**os.environ, "FLATTR_HOST_HOME": str(home), **(env or {})}
        self.proc = subprocess.Popen(
            [str(launcher), *(args if args is not None else [ORIGIN])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=str(launcher.parent), env=full_env,
        )
        self._buffer = b""
        self._next_id = 1
        self.events: list[dict[str, Any]] = []
        #: len(events) when the last request was sent: events from there on may be
        #: caused by it (or be late ones from before: wait for specific states)
        self.mark = 0

    def send_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, message: dict[str, Any] | bytes) -> None:
        self.send_raw(frame(message))

    def _read_some(self, deadline: float) -> bool:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            return False
        chunk = os.read(fd, 65536)
        if not chunk:
            raise EOFError("host closed stdout")
        self._buffer += chunk
        return True

    def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next frame from the host (reply or event)."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self._buffer) >= 4:
                (size,) = HEADER.unpack_from(self._buffer)
                if len(self._buffer) >= 4 + size:
                    data = self._buffer[4 : 4 + size]
                    self._buffer = self._buffer[4 + size :]
                    value: dict[str, Any] = json.loads(data)
                    return value
            if not self._read_some(deadline):
                raise TimeoutError(f"no frame from the host within {timeout} s")

    def request(self, type_: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """Send a request and return its reply; events seen meanwhile go to ``events``."""
        request_id = self._next_id
        self._next_id += 1
        self.mark = len(self.events)
        self.send({"id": request_id, "type": type_, **fields})
        deadline = time.monotonic() + timeout
        while True:
            message = self.recv(max(0.01, deadline - time.monotonic()))
            if "event" in message:
                self.events.append(message)
                continue
            assert message.get("id") == request_id, message
            return message

    def wait_event(self, predicate: Any, timeout: float = 10.0,
                   since: int | None = None) -> dict[str, Any]:
        """The first state event whose state satisfies ``predicate``, among the events
        that arrived since the last request was sent (or since index ``since``) and
        those still coming.
        """
        start = self.mark if since is None else since
        for event in self.events[start:]:
            if predicate(event["state"]):
                return event
        deadline = time.monotonic() + timeout
        while True:
            message = self.recv(max(0.01, deadline - time.monotonic()))
            if "event" in message:
                self.events.append(message)
                if predicate(message["state"]):
                    return message

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def wait(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout)

    def stderr_text(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@contextmanager
def running_host(launcher: Path, home: Path, **kwargs: Any) -> Iterator[HostProcess]:
    host = HostProcess(launcher, home, **kwargs)
    try:
        yield host
    finally:
        host.kill()
