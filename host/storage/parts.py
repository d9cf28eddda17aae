"""The host's parts, built in one place: store -> token store -> state store and queue.

Every entry point (the message loop's service, the submitter, the attention
service, the CLI, the inspector) opens its store with :func:`open_store` and builds
what sits on it with :func:`build`, so the wiring is written once
(docs/architecture.md#the-parts). A connection belongs to one thread: each thread
builds its own parts.
"""

from __future__ import annotations

from flattr_host.storage.queue import Queue
from flattr_host.storage.state import StateStore
from flattr_host.storage.store import Store
from flattr_host.storage.token_store import TokenStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from flattr_host.core.config import Config
    from flattr_host.core.logs import Logger


class Parts:
    """One store connection and what is built on it; :meth:`close` leaves the store open."""

    __slots__ = ("store", "tokens", "states", "queue")

    def __init__(self, store: Store, tokens: TokenStore, states: StateStore,
                 queue: Queue) -> None:
        self.store = store
        self.tokens = tokens
        self.states = states
        self.queue = queue

    def close(self) -> None:
        """Release what the parts hold beyond the store (a keyring connection)."""
        self.tokens.close()


def open_store(config: Config, log: Logger) -> Store:
    """A new connection to the configured store (its own for each thread)."""
    return Store(config.db_path, log)


def build(config: Config, store: Store, log: Logger) -> Parts:
    """The token store (with the configured key), state store and queue over ``store``."""
    tokens = TokenStore(store, config.key_path, log, config.key_backend)
    return Parts(store, tokens, StateStore(store, tokens), Queue(store))
