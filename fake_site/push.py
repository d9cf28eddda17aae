"""Live push to open flattr.com pages over a WebSocket (the ``websockets`` package).

aiohttp serves the pages; the push socket is a separate ``websockets`` server on
its own loopback port with the same certificate (SAN ``127.0.0.1``). A page is
told ``wss://127.0.0.1:<push port>/push?ticket=<ticket>`` in its config: the
ticket is minted for the logged-in user when the page is rendered, because a
socket to 127.0.0.1 does not carry the flattr.com session cookie. Only pages of
the site's own origins may connect (``Origin`` check).

Messages are JSON text frames:
``{"type": "subscription", "subscription": {"active": bool}, "version": int}``,
sent once on connect and then on every change of the account's subscription.
``version`` grows with every change so a page can drop stale or repeated news.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import socket
import ssl
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

log = logging.getLogger(__name__)

TICKET_BYTES = 18


def subscription_message(active: bool, version: int) -> str:
    """The JSON text of a subscription push."""
    return json.dumps(
        {"type": "subscription", "subscription": {"active": active}, "version": version}
    )


class PushHub:
    """Tickets, open page sockets per user, and broadcasting to them."""

    def __init__(self, current_state: Callable[[int], tuple[bool, int] | None]) -> None:
        self._current_state = current_state
        self._tickets: dict[str, int] = {}
        self._open: dict[int, set[ServerConnection]] = {}
        self._server: Server | None = None
        self._closing: set[asyncio.Future[None]] = set()
        self.url = ""

    def ticket(self, user_id: int) -> str:
        """A new ticket letting one page of this user open a push socket."""
        value = secrets.token_urlsafe(TICKET_BYTES)
        self._tickets[value] = user_id
        return value

    def forget_user(self, user_id: int) -> None:
        """Drop the user's tickets (logout); open sockets close on their own later."""
        self._tickets = {t: u for t, u in self._tickets.items() if u != user_id}

    def clear(self) -> None:
        """Forget all tickets (admin reset); open sockets are closed too."""
        self._tickets.clear()
        for conns in self._open.values():
            for conn in list(conns):
                task = asyncio.ensure_future(conn.close(1001, "reset"))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    def open_count(self, user_id: int) -> int:
        """How many push sockets of this user are open."""
        return len(self._open.get(user_id, ()))

    async def broadcast(self, user_id: int, active: bool, version: int) -> int:
        """Send a subscription push to every open page of the user; returns how many."""
        message = subscription_message(active, version)
        sent = 0
        for conn in list(self._open.get(user_id, ())):
            try:
                await conn.send(message)
                sent += 1
            except ConnectionClosed:
                pass
        return sent

    async def _handle(self, conn: ServerConnection) -> None:
        query = parse_qs(urlsplit(conn.request.path if conn.request else "").query)
        user_id = self._tickets.get((query.get("ticket") or [""])[0])
        state = self._current_state(user_id) if user_id is not None else None
        if user_id is None or state is None:
            await conn.close(1008, "unknown ticket")
            return
        self._open.setdefault(user_id, set()).add(conn)
        try:
            await conn.send(subscription_message(*state))
            await conn.wait_closed()
        finally:
            self._open.get(user_id, set()).discard(conn)

    async def start(self, sock: socket.socket, ssl_context: ssl.SSLContext,
                    origins: Sequence[str]) -> None:
        """Serve push sockets on the already bound ``sock``."""
        allowed: list[Origin | None] = [Origin(o) for o in origins]
        self._server = await serve(
            self._handle, sock=sock, ssl=ssl_context, origins=allowed,
            ping_interval=20, ping_timeout=20,
        )
        port = sock.getsockname()[1]
        self.url = f"wss://127.0.0.1:{port}/push"

    async def stop(self) -> None:
        """Close every socket and stop serving."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def describe(self) -> dict[str, Any]:
        """Open socket counts per user id (admin info)."""
        return {str(uid): len(conns) for uid, conns in self._open.items() if conns}
