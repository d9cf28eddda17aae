"""OAuth code flow, partner web hooks and verification, and the command line."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from flattr_testing.fake_site import FakeSite
from tests.unit.fake_site.client import Answer, call

REDIRECT = "http://localhost"
BASIC = "Basic " + base64.b64encode(b"demo-client:demo-secret").decode()


def login(site: FakeSite, username: str) -> str:
    """Log in through the form; returns the Cookie header value."""
    answer = call(site, "POST", "/login", server="site",
                  form={"username": username, "password": username, "next": "/settings"})
    assert answer.status == 303 and answer.header("Location") == "/settings"
    cookie = answer.header("Set-Cookie") or ""
    assert "Secure" in cookie and "HttpOnly" in cookie
    return cookie.split(";", 1)[0]


def authorize(site: FakeSite, cookie: str, **params: str) -> Answer:
    query = {"response_type": "code", "client_id": "demo-client", "redirect_uri": REDIRECT,
             "scope": "flattr thing", **params}
    page = call(site, "GET", "/oauth/authorize?" + urlencode(query), server="site",
                headers={"Cookie": cookie})
    if page.status != 200:
        return page
    csrf = re.search(rb'name="csrf" value="([^"]+)"', page.body)
    assert csrf is not None
    return call(site, "POST", "/oauth/authorize", server="site", headers={"Cookie": cookie},
                form={**query, "csrf": csrf.group(1).decode(), "decision": "allow"})


def exchange(site: FakeSite, code: str, server: str = "site", auth: str = BASIC) -> Answer:
    return call(site, "POST", "/oauth/token", server=server, headers={"Authorization": auth},
                body={"code": code, "grant_type": "authorization_code", "redirect_uri": REDIRECT})


def test_authorization_code_flow(site: FakeSite) -> None:
    cookie = login(site, "alice")
    redirect = authorize(site, cookie, state="xyz")
    assert redirect.status == 302
    location = urlsplit(redirect.header("Location") or "")
    assert f"{location.scheme}://{location.netloc}" == REDIRECT
    params = parse_qs(location.query)
    assert params["state"] == ["xyz"]
    token = exchange(site, params["code"][0])
    assert token.status == 200
    assert token.header("Content-Type") == "application/json; charset=utf-8"
    assert token.header("Cache-Control") == "no-store"
    assert token.header("Pragma") == "no-cache"
    assert token.header("Expires") == "Thu, 19 Nov 1981 08:52:00 GMT"
    body = token.json()
    assert list(body) == ["access_token", "token_type"] and body["token_type"] == "bearer"
    assert re.fullmatch(r"[0-9a-f]{40}", body["access_token"])
    me = call(site, "GET", "/rest/v2/user", token=body["access_token"]).json()
    assert me["username"] == "alice" and "email" not in me  # scopes flattr thing only
    # Single use: a replay fails and revokes the token issued for the code.
    replay = exchange(site, params["code"][0], server="api")
    assert replay.status == 400 and replay.json()["error"] == "invalid_grant"
    assert call(site, "GET", "/rest/v2/user", token=body["access_token"]).status == 401


def test_oauth_errors(site: FakeSite) -> None:
    cookie = login(site, "alice")
    code = parse_qs(urlsplit(authorize(site, cookie).header("Location") or "").query)["code"][0]
    bad_client = exchange(site, code, auth="Basic " + base64.b64encode(b"demo-client:x").decode())
    assert bad_client.status == 401 and bad_client.json()["error"] == "invalid_client"
    site.admin("POST", "clock", {"advance": 61})
    expired = exchange(site, code)
    assert expired.status == 400 and expired.json()["error"] == "invalid_grant"
    bad_scope = authorize(site, cookie, scope="flattr everything")
    assert bad_scope.status == 302
    assert "error=invalid_scope" in (bad_scope.header("Location") or "")
    wrong_redirect = authorize(site, cookie, redirect_uri="http://evil.example")
    assert wrong_redirect.status == 400
    anonymous = call(site, "GET", "/oauth/authorize?client_id=demo-client&response_type=code",
                     server="site")
    assert anonymous.status == 303 and (anonymous.header("Location") or "").startswith("/login")


def test_extension_token_needs_session_and_csrf(site: FakeSite) -> None:
    assert call(site, "POST", "/oauth/ext/token", server="site", body={"id": "x"}).status == 401
    cookie = login(site, "alice")
    refused = call(site, "POST", "/oauth/ext/token", server="site", body={"id": "x"},
                   headers={"Cookie": cookie})
    assert refused.status == 403


class Receiver:
    """A partner's web hook endpoint: answers with scripted statuses, records forms."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.forms: list[dict[str, list[str]]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                assert self.headers.get_content_type() == "application/x-www-form-urlencoded"
                outer.forms.append(parse_qs(self.rfile.read(length).decode()))
                self.send_response(outer.statuses.pop(0) if outer.statuses else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver([503])
    yield r
    r.close()


def _flattr_partner_thing(site: FakeSite, token: str, identifier: str) -> int:
    auto = ("https://flattr.com/submit/auto?url=" + quote("https://partner.example/p1", safe="")
            + f"&owner={quote(identifier)}&title=P1")
    result = call(site, "POST", "/rest/v2/flattr/bulk", token=token, body=[{"url": auto}]).json()
    assert result["results"][0]["status"] == "ok"
    return int(result["results"][0]["thing_id"])


def test_webhook_delivered_after_retry(site: FakeSite, receiver: Receiver) -> None:
    site.configure(webhook_retry_delays=[0.05, 0.05])
    site.admin("POST", "partners", {"prefix": "twitter", "hook_url": receiver.url})
    flattrer = site.create_user("fan")
    thing_id = _flattr_partner_thing(site, flattrer["token"], "twitter:user:id:123")
    attempts = site.webhook_attempts(wait=1, delivered=True)
    log = site.webhook_attempts()
    assert [a["delivered"] for a in log] == [False, True]
    assert log[0]["outcome"] == "HTTP 503" and attempts[0]["attempt"] == 2
    assert len(receiver.forms) == 2 and receiver.forms[0] == receiver.forms[1]
    form = {k: v[0] for k, v in receiver.forms[1].items()}
    assert form == {"_event": "pendingclickcreate", "thing_id": str(thing_id),
                    "thing_owner_id": "twitter:user:id:123", "thing_clicks_total": "1",
                    "flattrer_username": "fan",
                    "claim_url": f"https://flattr.com/claim/{thing_id}"}


def test_webhook_retried_while_partner_is_down(site: FakeSite) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    site.configure(webhook_retry_delays=[0.01, 0.01])
    site.admin("POST", "partners", {"prefix": "partner:ns",
                                    "hook_url": f"http://127.0.0.1:{dead_port}/hook"})
    fan = site.create_user("fan2")
    _flattr_partner_thing(site, fan["token"], "partner:ns:42")
    attempts = site.webhook_attempts(wait=3, delivered=False)
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert all("Connect" in a["outcome"] or "refused" in a["outcome"] for a in attempts)


def test_verify_claims_unclaimed_things(site: FakeSite, receiver: Receiver) -> None:
    partner = site.create_user("partnerco")
    site.admin("POST", "partners", {"prefix": "twitter", "hook_url": receiver.url,
                                    "username": "partnerco"})
    fan = site.create_user("fan3")
    thing_id = _flattr_partner_thing(site, fan["token"], "twitter:user:id:9")
    stranger = site.create_user("stranger")["token"]
    denied = call(site, "POST", "/rest/v2/users/bob/verify", token=stranger,
                  body={"identity": "twitter:user:id:9"})
    assert denied.status == 401 and denied.json()["error"] == "unauthorized"
    ok = call(site, "POST", "/rest/v2/users/bob/verify", token=partner["token"],
              body={"identity": "twitter:user:id:9"})
    assert ok.status == 200 and ok.header("X-RateLimit-Limit") == "1000"
    owner = call(site, "GET", f"/rest/v2/things/{thing_id}").json()["owner"]
    assert owner["username"] == "bob"


def test_cli_ready_line_spki_and_persistence(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = FakeSite(seed=False, data_dir=data).start()
    try:
        assert first.proc is not None
        line_keys = {"site", "api", "ca", "spki"}
        assert {k for k in vars(first) if k in line_keys} == line_keys
        assert Path(first.ca).parent == data / "certs"
        leaf = x509.load_pem_x509_certificates((data / "certs" / "leaf.pem").read_bytes())[0]
        der = leaf.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        assert first.spki == base64.b64encode(hashlib.sha256(der).digest()).decode()
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert {"flattr.com", "api.flattr.com", "localhost"} <= set(
            sans.get_values_for_type(x509.DNSName))
        first.create_user("persistent")
    finally:
        assert first.stop() == 0
    second = FakeSite(seed=False, data_dir=data).start()
    try:
        assert second.spki == first.spki
        assert call(second, "GET", "/rest/v2/users/persistent").status == 200
    finally:
        assert second.stop() == 0


def test_cli_prints_exactly_one_json_line_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "fake_flattr"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None
    ready = json.loads(proc.stdout.readline())
    assert list(ready) == ["site", "api", "ca", "spki", "api_http", "files"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", ready["api_http"])
    assert re.fullmatch(r"https://127\.0\.0\.1:\d+", ready["site"])
    assert re.fullmatch(r"https://127\.0\.0\.1:\d+", ready["files"])
    assert re.fullmatch(r"https://127\.0\.0\.1:\d+", ready["api"])
    assert Path(ready["ca"]).exists()
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and rest == b""
    assert not Path(ready["ca"]).exists()  # temporary certificate folder removed


def test_cli_rejects_a_busy_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(AssertionError, match="cannot listen"):
            FakeSite(seed=False, port=port).start()

