"""A tiny HTTPS client for the fake site tests: no redirects followed, raw headers kept."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flattr_testing.fake_site import FakeSite


@dataclass
class Answer:
    """Status, headers (name -> value, last wins; ``raw`` keeps all) and body."""

    status: int
    headers: dict[str, str]
    raw_headers: list[tuple[str, str]]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


def call(site: FakeSite, method: str, path: str, *, token: str | None = None,
         body: Any = None, headers: dict[str, str] | None = None, server: str = "api",
         form: dict[str, str] | None = None, timeout: float = 10.0) -> Answer:
    """One request to the fake API (or ``server`` "site" / "files"); JSON ``body`` or
    ``form`` encoded."""
    base = urlsplit({"api": site.api, "site": site.site, "files": site.files}[server])
    conn = http.client.HTTPSConnection(base.hostname or "127.0.0.1", base.port,
                                       context=site.tls, timeout=timeout)
    sent = dict(headers or {})
    data: bytes | None = None
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    if form is not None:
        from urllib.parse import urlencode

        data = urlencode(form).encode()
        sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
    elif body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
    try:
        conn.request(method, path, body=data, headers=sent)
        resp = conn.getresponse()
        raw = resp.getheaders()
        return Answer(resp.status, dict(raw), raw, resp.read())
    finally:
        conn.close()
