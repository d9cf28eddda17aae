"""Fixtures for host unit tests: a data directory, a logger, an open store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flattr_host.core.logs import Logger
from flattr_host.storage.store import Store
from flattr_host.storage.token_store import TokenStore


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def log(home: Path) -> Logger:
    return Logger(home / "logs", "debug")


@pytest.fixture
def store(home: Path, log: Logger) -> Iterator[Store]:
    with Store(home / "host.db", log) as opened:
        yield opened


@pytest.fixture
def tokens(store: Store, home: Path, log: Logger) -> TokenStore:
    return TokenStore(store, home / "token.key", log)


@pytest.fixture(autouse=True)
def _no_leftover_problems() -> Iterator[None]:
    """Each test starts and ends with no thread problem in this process."""
    from flattr_host.core import health

    health.PROCESS.reset()
    yield
    health.PROCESS.reset()
