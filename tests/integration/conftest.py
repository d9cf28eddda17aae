"""Fixtures for the queue's delivery tests: real host processes, real fake API (HTTPS)."""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flattr_testing.fake_site import FakeSite
from flattr_testing.host import HostProcess, install_launcher

_users = itertools.count(1)


class Delivery:
    """One data directory, its launcher, a fake-site user, and the hosts started on it."""

    def __init__(self, site: FakeSite, tmp: Path) -> None:
        self.site = site
        self.home = tmp / "home"
        self.launcher = install_launcher(tmp / "profile", self.home)
        user = site.create_user(f"queue-user-{next(_users)}", active=True)
        self.username: str = user["username"]
        self.token: str = user["token"]
        self.hosts: list[HostProcess] = []

    def env(self, **overrides: str) -> dict[str, str]:
        base = {
            "FLATTR_API_BASE": self.site.api,
            "FLATTR_CA_BUNDLE": self.site.ca,
            "FLATTR_RETRY_BASE_S": "0",
            "FLATTR_RETRY_CAP_S": "0",
            "FLATTR_SUBMIT_DELAY_S": "0",
            "FLATTR_LEASE_S": "2",
            "FLATTR_REQUEST_TIMEOUT_S": "5",
            "FLATTR_LOG_LEVEL": "debug",
        }
        return {**base, **overrides}

    def start(self, sign_in: bool = True, **env: str) -> HostProcess:
        host = HostProcess(self.launcher, self.home, env=self.env(**env))
        self.hosts.append(host)
        assert host.request("hello", extension={"id": "x", "version": "1", "build": "t"})["ok"]
        if sign_in:
            reply = host.request("set-token", accessToken=self.token,
                                 subscription={"active": True})
            assert reply["result"] == {"authenticated": True}
        return host

    def rows(self) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.home / "host.db")
        try:
            return conn.execute("SELECT url, status, outcome, reason, attempts FROM queue "
                                "ORDER BY id").fetchall()
        finally:
            conn.close()

    def bulk_requests(self, since: int = 0) -> list[dict[str, Any]]:
        return self.site.journal(method="POST", path="/rest/v2/flattr/bulk", since=since)

    def sent_urls(self, since: int = 0) -> list[str]:
        """Every URL in every bulk request journalled (scripted answers included)."""
        urls: list[str] = []
        for entry in self.bulk_requests(since):
            urls += [item["url"] for item in json.loads(entry["body"])]
        return urls

    def close(self) -> None:
        for host in self.hosts:
            host.kill()


@pytest.fixture
def delivery(site: FakeSite, tmp_path: Path) -> Iterator[Delivery]:
    made = Delivery(site, tmp_path)
    yield made
    made.close()


def drained(done: int = 1) -> Callable[[dict[str, Any]], bool]:
    """A predicate: nothing pending or in flight, and at least ``done`` items delivered."""

    def check(state: dict[str, Any]) -> bool:
        queue = state["queue"]
        return bool(queue["pending"] == 0 and queue["inFlight"] == 0 and queue["done"] >= done)

    return check


Predicate = Callable[[dict[str, Any]], bool]
