"""The session snapshot kept in the store, changed only through the state machine.

:class:`StateStore` reads the snapshot (auth from the token row, subscription and
rate limit from ``kv``) and applies events with
:func:`flattr_host.core.session.transition`, the one place that decides
(docs/architecture.md#the-state-machine). It writes what the machine decided: the
token row is put on :class:`TokenStored` and deleted when the machine signs out.
"""

from __future__ import annotations

from flattr_host.core.errors import TransitionError
from flattr_host.core.session import (
    Event,
    Snapshot,
    Subscription,
    TokenStored,
    erases_token,
    transition,
)
from flattr_host.storage.store import Store
from flattr_host.storage.token_store import TokenStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3


class StateStore:
    """The snapshot kept in the store, changed only through :meth:`apply`.

    Auth is whether a usable token row exists; subscription and rate limit live in
    the ``kv`` table. :meth:`apply` reads, transitions and writes inside one
    ``BEGIN IMMEDIATE`` transaction, so concurrent host processes serialize and no
    update is lost; an illegal transition rolls back and changes nothing.
    """

    def __init__(self, store: Store, tokens: TokenStore) -> None:
        self._store = store
        self._tokens = tokens

    def read(self) -> Snapshot:
        """The current snapshot (cheap: no decryption)."""
        return self._read(self._store.conn)

    def key_location(self) -> dict[str, str | None]:
        """Which backend holds the token's key, and why (``TokenStore.location``)."""
        return self._tokens.location()

    def _read(self, conn: sqlite3.Connection) -> Snapshot:
        rows = dict(
            conn.execute(
                "SELECT key, value FROM kv WHERE key IN ('subscription', 'rate_limited_until')"
            ).fetchall()
        )
        until = rows.get("rate_limited_until")
        return Snapshot(
            auth=self._tokens.auth(),
            subscription=Subscription(rows.get("subscription", Subscription.UNKNOWN.value)),
            rate_limited_until=float(until) if until else None,
        )

    def apply(
        self, event: Event, token: str | None = None, sent_with: bytes | None = None
    ) -> tuple[Snapshot, Snapshot]:
        """Apply ``event``; return (before, after).

        ``token`` is required with :class:`TokenStored`. ``sent_with`` (the
        ciphertext the request was made with, see ``TokenStore.load_sealed``) guards
        API answers: if the token changed since that request was sent (the user
        signed in again meanwhile), a 401 or 402 about the old token is ignored.
        """
        if isinstance(event, TokenStored) and token is None:
            raise TransitionError("TokenStored needs the token")
        sealed = self._tokens.seal(token) if token is not None else None
        with self._store.write() as conn:
            before = self._read(conn)
            if sent_with is not None and self._tokens.current_ciphertext(conn) != sent_with:
                return before, before
            after = transition(before, event)
            if sealed is not None:
                self._tokens.put(conn, sealed)
                # Signing in again answers a "store replaced" note (docs/protocol.md).
                conn.execute("DELETE FROM kv WHERE key = 'problem'")
            elif erases_token(before, after):
                self._tokens.delete(conn)
            self._write(conn, after)
        return before, after

    @staticmethod
    def _write(conn: sqlite3.Connection, state: Snapshot) -> None:
        conn.execute(
            "INSERT INTO kv (key, value) VALUES ('subscription', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (state.subscription.value,),
        )
        if state.rate_limited_until is None:
            conn.execute("DELETE FROM kv WHERE key = 'rate_limited_until'")
        else:
            conn.execute(
                "INSERT INTO kv (key, value) VALUES ('rate_limited_until', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (repr(state.rate_limited_until),),
            )
