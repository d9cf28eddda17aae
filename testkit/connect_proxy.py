"""A loopback HTTP CONNECT proxy that maps real host names to local ports.

Firefox has no `--host-resolver-rules`; pointing its profile's proxy prefs at this
proxy lets a test browser reach the fake site as https://flattr.com while the TLS
session still runs end to end between Firefox and the fake site (the proxy only
copies bytes, so SNI, the certificate and the Host header are exactly the real ones).

Contract:
- Listens on 127.0.0.1 only (team rule: loopback only).
- `CONNECT host:port` whose "host:port" is a key of the map is tunnelled to the
  mapped (address, port), which must be a loopback address; anything else gets
  403 and is recorded in :attr:`ConnectProxy.refused`. Non-CONNECT requests
  (plain-http proxying) get 405.
- :meth:`ConnectProxy.close` stops accepting and closes every open tunnel.
- :attr:`ConnectProxy.client_bytes` holds every byte clients sent through tunnels
  (what the proxy could read), so a test can check a secret never went in clear.
"""

from __future__ import annotations

import ipaddress
import selectors
import socket
import socketserver
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType

from flattr_testing.errors import FlattrTestingError

__all__ = [
    "ConnectProxy",
    "ProxyConfigError",
    "TunnelRecord",
    "flattr_map",
]

HEAD_LIMIT = 8192  # bytes of request head accepted before refusing with 431
HEAD_TIMEOUT = 10.0  # seconds a client may take to send its request head
CONNECT_TIMEOUT = 5.0  # seconds to open the upstream connection
BUFFER = 65536


class ProxyConfigError(FlattrTestingError, ValueError):
    """The mapping names a target that is not a loopback address."""


@dataclass(frozen=True)
class TunnelRecord:
    """One CONNECT request: the authority asked for and where it went (None if refused)."""

    authority: str
    target: tuple[str, int] | None
    status: int


def flattr_map(site_port: int, api_port: int,
               files_port: int | None = None) -> dict[str, tuple[str, int]]:
    """The project's mapping: flattr.com:443 -> site, api.flattr.com:443 -> API and,
    when given, files.flattr.com:443 -> the files host."""
    mapping = {
        "flattr.com:443": ("127.0.0.1", site_port),
        "api.flattr.com:443": ("127.0.0.1", api_port),
    }
    if files_port is not None:
        mapping["files.flattr.com:443"] = ("127.0.0.1", files_port)
    return mapping


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: ConnectProxy


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        proxy = self.server.owner
        client: socket.socket = self.request
        proxy._track(client)
        try:
            self._serve(proxy, client)
        except OSError:
            pass  # the browser or the site went away mid-tunnel: nothing to report
        finally:
            proxy._untrack(client)

    def _serve(self, proxy: ConnectProxy, client: socket.socket) -> None:
        client.settimeout(HEAD_TIMEOUT)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                return
            head += chunk
            if len(head) > HEAD_LIMIT:
                _reply(client, 431, f"request head over {HEAD_LIMIT} bytes")
                return
        head_bytes, _, early = head.partition(b"\r\n\r\n")
        proxy._heads_seen(head_bytes)
        request_line = head_bytes.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split()
        if len(parts) != 3 or parts[0].upper() != "CONNECT":
            proxy._record(TunnelRecord(request_line[:200], None, 405))
            _reply(client, 405, "only CONNECT is supported")
            return
        authority = parts[1].lower()
        target = proxy.mapping.get(authority)
        if target is None:
            proxy._record(TunnelRecord(authority, None, 403))
            _reply(client, 403, f"{authority} is not in the proxy map")
            return
        try:
            upstream = socket.create_connection(target, timeout=CONNECT_TIMEOUT)
        except OSError as exc:
            proxy._record(TunnelRecord(authority, target, 502))
            _reply(client, 502, f"{target[0]}:{target[1]} unreachable: {exc}")
            return
        proxy._record(TunnelRecord(authority, target, 200))
        proxy._track(upstream)
        try:
            client.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            if early:
                proxy._saw(early)
                upstream.sendall(early)
            _pipe(client, upstream, proxy._saw)
        finally:
            proxy._untrack(upstream)
            upstream.close()


def _reply(client: socket.socket, status: int, reason: str) -> None:
    body = (reason + "\n").encode()
    client.sendall(
        f"HTTP/1.1 {status} {reason[:60]}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n".encode("latin-1", "replace") + body
    )


def _pipe(a: socket.socket, b: socket.socket,
          saw: Callable[[bytes], None] | None = None) -> None:
    """Copy bytes both ways until either side closes; ``saw`` gets what ``a`` sends."""
    a.settimeout(None)
    b.settimeout(None)
    peers = {a: b, b: a}
    with selectors.DefaultSelector() as sel:
        sel.register(a, selectors.EVENT_READ)
        sel.register(b, selectors.EVENT_READ)
        open_reads = 2
        while open_reads:
            for key, _ in sel.select():
                src: socket.socket = key.fileobj  # type: ignore[assignment]
                data = src.recv(BUFFER)
                if data:
                    if saw is not None and src is a:
                        saw(data)
                    peers[src].sendall(data)
                    continue
                # Half-close: forward EOF so TLS close_notify semantics survive.
                sel.unregister(src)
                open_reads -= 1
                try:
                    peers[src].shutdown(socket.SHUT_WR)
                except OSError:
                    return


class ConnectProxy:
    """Threaded CONNECT proxy on 127.0.0.1; use as a context manager.

    `mapping` maps "host:port" (lower case) to a loopback (address, port).
    """

    def __init__(self, mapping: Mapping[str, tuple[str, int]], port: int = 0) -> None:
        for authority, (address, _port) in mapping.items():
            if not ipaddress.ip_address(address).is_loopback:
                raise ProxyConfigError(
                    f"{authority} maps to {address}, which is not a loopback address"
                )
        self.mapping = {k.lower(): v for k, v in mapping.items()}
        self.records: list[TunnelRecord] = []
        self._client_bytes = bytearray()
        self.heads: list[bytes] = []  # each request head (CONNECT line and headers)
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.owner = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port the proxy listens on."""
        return int(self._server.server_address[1])

    @property
    def refused(self) -> list[TunnelRecord]:
        """Requests that were not tunnelled (status other than 200)."""
        with self._lock:
            return [r for r in self.records if r.status != 200]

    @property
    def client_bytes(self) -> bytes:
        """Every byte clients sent inside tunnels so far (request heads excluded)."""
        with self._lock:
            return bytes(self._client_bytes)

    def start(self) -> ConnectProxy:
        """Start serving in a daemon thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
            name=f"connect-proxy-{self.port}", daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop accepting, close every tunnel, join the server thread; idempotent."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5.0)
            self._thread = None
        self._server.server_close()
        with self._lock:
            sockets = list(self._sockets)
            self._sockets.clear()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def __enter__(self) -> ConnectProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _heads_seen(self, head: bytes) -> None:
        with self._lock:
            self.heads.append(head)

    def _saw(self, data: bytes) -> None:
        with self._lock:
            self._client_bytes += data

    def _record(self, record: TunnelRecord) -> None:
        with self._lock:
            self.records.append(record)

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
