"""The bulk endpoint contract and the admin API (scripts, faults, journal, revoke)."""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, urlsplit

import pytest

from flattr_testing.fake_site import FakeSite, FakeSiteError
from tests.unit.fake_site.client import call

BULK = "/rest/v2/flattr/bulk"


def test_bulk_per_url_outcomes_in_input_order(site: FakeSite) -> None:
    user = site.create_user("bulky")
    own = call(site, "POST", "/rest/v2/things", token=user["token"],
               body={"url": "https://bulky.example/"}).json()["id"]
    items = [{"url": "https://a.example/1"}, {"url": "not a url"},
             {"url": "https://a.example/1"}, {"url": "https://bulky.example/"},
             {"url": "http://blog.flattr.net/2011/10/api-v2-beta-out-whats-changed/"}]
    answer = call(site, "POST", BULK, token=user["token"], body=items)
    assert answer.status == 200
    assert answer.header("Content-Type") == "application/json;charset=utf-8"
    assert answer.header("X-RateLimit-Current") == "2"
    results = answer.json()["results"]
    assert [r["url"] for r in results] == [i["url"] for i in items]
    assert [r["status"] for r in results] == ["ok", "invalid_url", "flattr_once",
                                             "flattr_owner", "ok"]
    assert results[1]["thing_id"] is None
    assert results[0]["thing_id"] == results[2]["thing_id"] and results[3]["thing_id"] == own
    assert results[4]["thing_id"] == 423405
    flattrs = call(site, "GET", "/rest/v2/user/flattrs", token=user["token"]).json()
    assert sorted(f["thing"]["url"] for f in flattrs) == sorted(
        [items[0]["url"], items[4]["url"]])


def test_bulk_auto_submit_url_creates_thing_with_metadata(site: FakeSite) -> None:
    user = site.create_user("autob")
    auto = ("https://flattr.com/submit/auto?url=" + quote("https://part.example/x", safe="")
            + "&owner=twitter:user:id:7&title=Partner%20post")
    result = call(site, "POST", BULK, token=user["token"], body=[{"url": auto}]).json()
    tid = result["results"][0]["thing_id"]
    thing = call(site, "GET", f"/rest/v2/things/{tid}").json()
    assert thing["url"] == "https://part.example/x" and thing["title"] == "Partner post"
    assert thing["owner"] is None  # unclaimed partner thing


def test_bulk_limits_and_errors(site: FakeSite) -> None:
    user = site.create_user("limits")
    too_many = [{"url": f"https://x.example/{i}"} for i in range(501)]
    answer = call(site, "POST", BULK, token=user["token"], body=too_many)
    assert answer.status == 400 and answer.json()["error"] == "invalid_request"
    assert "501" in answer.json()["error_description"]
    assert "500" in answer.json()["error_description"]
    exactly = [{"url": f"https://x.example/{i}"} for i in range(500)]
    assert call(site, "POST", BULK, token=user["token"], body=exactly).status == 200
    for bad in ({"url": "x"}, [{"uri": "x"}], [1], b"[", b""):
        got = call(site, "POST", BULK, token=user["token"], body=bad)
        assert got.status == 400 and got.json()["error"] == "invalid_request", bad
    assert call(site, "POST", BULK, body=[]).status == 401
    assert call(site, "POST", BULK, token="f" * 40, body=[]).status == 401
    no_scope = site.create_user("noscope", scopes=["thing"])["token"]
    assert call(site, "POST", BULK, token=no_scope, body=[]).json()["error"] == (
        "insufficient_scope")


def test_bulk_402_when_subscription_inactive_and_nothing_stored(site: FakeSite) -> None:
    user = site.create_user("lapsed", active=False)
    answer = call(site, "POST", BULK, token=user["token"], body=[{"url": "https://y.example/"}])
    assert answer.status == 402
    assert answer.json()["error"] == "subscription_inactive"
    assert list(answer.json()) == ["error", "error_description", "error_uri"]
    assert call(site, "GET", "/rest/v2/user/flattrs", token=user["token"]).json() == []
    site.set_subscription("lapsed", True)
    assert call(site, "POST", BULK, token=user["token"],
                body=[{"url": "https://y.example/"}]).status == 200


def test_revoke_gives_401_on_next_call(site: FakeSite) -> None:
    user = site.create_user("revoked")
    assert call(site, "POST", BULK, token=user["token"], body=[]).status == 200
    assert site.revoke(user["token"]) == 1
    answer = call(site, "POST", BULK, token=user["token"], body=[])
    assert answer.status == 401 and answer.json()["error"] == "unauthorized"
    with pytest.raises(FakeSiteError) as err:
        site.revoke("nope")
    assert err.value.status == 404


def test_script_status_headers_body_then_normal(site: FakeSite) -> None:
    user = site.create_user("scripted")
    site.script("POST", BULK, [
        {"status": 503, "headers": {"Retry-After": "7"}, "body": {"error": "busy"}},
        {"status": 429, "body": "plain text"},
    ])
    first = call(site, "POST", BULK, token=user["token"], body=[{"url": "https://s.example/"}])
    assert first.status == 503 and first.header("Retry-After") == "7"
    assert first.json() == {"error": "busy"}
    second = call(site, "POST", BULK, token=user["token"], body=[])
    assert second.status == 429 and second.body == b"plain text"
    assert call(site, "POST", BULK, token=user["token"], body=[]).status == 200
    # Scripted requests are journalled too, with headers and body.
    entries = site.journal(method="POST", path=BULK)
    assert len(entries) == 3
    assert entries[0]["headers"]["Authorization"] == f"Bearer {user['token']}"
    assert entries[0]["body"] == '[{"url": "https://s.example/"}]'
    assert {"seq", "server", "method", "path", "query", "headers", "body", "time"} <= set(
        entries[0])


def test_fault_delay_then_normal_handling(site: FakeSite) -> None:
    site.script("GET", "/rest/v2/categories", [{"fault": "delay", "seconds": 0.3}])
    answer = call(site, "GET", "/rest/v2/categories")
    assert answer.status == 200 and answer.json()[0]["id"] == "text"
    entry = site.journal(path="/rest/v2/categories")[0]
    # The journal stamps arrival; the answer came after the delay.
    assert time.time() - entry["time"] >= 0.3


async def _read_after_request(site: FakeSite, path: str) -> bytes:
    # asyncio reads the socket itself, so a TCP RST surfaces as ECONNRESET
    # (a blocking SSLSocket reports it as a ragged EOF instead).
    api = urlsplit(site.api)
    reader, writer = await asyncio.open_connection(api.hostname, api.port, ssl=site.tls)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: api.flattr.com\r\n\r\n".encode())
    try:
        return await reader.read()
    finally:
        writer.close()


def test_fault_reset_sends_rst(site: FakeSite) -> None:
    site.script("GET", "/rest/v2/languages", [{"fault": "reset"}])
    # In its own thread: Playwright's sync API may own this thread's event loop.
    with ThreadPoolExecutor(1) as pool, pytest.raises(ConnectionResetError):
        pool.submit(asyncio.run, _read_after_request(site, "/rest/v2/languages")).result()
    assert call(site, "GET", "/rest/v2/languages").status == 200


def test_fault_close_without_response(site: FakeSite) -> None:
    site.script("GET", "/rest/v2/languages", [{"fault": "close"}])
    with pytest.raises(http.client.RemoteDisconnected):
        call(site, "GET", "/rest/v2/languages")
    assert call(site, "GET", "/rest/v2/languages").status == 200


def test_fault_hang_until_client_gives_up(site: FakeSite) -> None:
    site.script("GET", "/rest/v2/languages", [{"fault": "hang"}])
    with pytest.raises(TimeoutError):
        call(site, "GET", "/rest/v2/languages", timeout=0.5)
    assert call(site, "GET", "/rest/v2/languages").status == 200
    assert len(site.journal(path="/rest/v2/languages")) == 2


def test_bad_script_is_refused(site: FakeSite) -> None:
    for steps in ([{"fault": "explode"}], [{"status": 99}], [{"fault": "delay", "seconds": -1}]):
        with pytest.raises(FakeSiteError) as err:
            site.script("GET", "/x", steps)
        assert err.value.status == 400


def test_wait_for_long_polls_without_client_polling(site: FakeSite) -> None:
    with pytest.raises(FakeSiteError):
        site.wait_for(1, path="/rest/v2/user", timeout=0.2)
    before = site.journal()
    since = before[-1]["seq"] if before else 0
    import threading

    def later() -> None:
        call(site, "GET", "/rest/v2/user")
        call(site, "GET", "/rest/v2/user")

    thread = threading.Timer(0.2, later)
    thread.start()
    entries = site.wait_for(2, method="GET", path="/rest/v2/user", since=since, timeout=10)
    thread.join()
    assert len(entries) == 2 and all(e["seq"] > since for e in entries)


def test_admin_reset_forgets_users_journal_and_scripts(site: FakeSite) -> None:
    site.create_user("ephemeral")
    site.script("GET", "/rest/v2/languages", [{"status": 500}])
    call(site, "GET", "/rest/v2/categories")
    site.reset()
    assert site.journal() == []
    assert call(site, "GET", "/rest/v2/languages").status == 200
    assert call(site, "GET", "/rest/v2/users/ephemeral").status == 404
    assert call(site, "GET", "/rest/v2/users/flattr").status == 200  # seed restored
    with pytest.raises(FakeSiteError) as err:
        site.create_user("flattr")
    assert err.value.status == 409


#: Each bulk answer style: (status, body check). The flattrs are stored whatever it is.
BULK_STYLES = {
    "documented": (200, lambda b: [r["status"] for r in json.loads(b)["results"]] == ["ok"] * 2),
    "empty": (200, lambda b: b == b""),
    "created": (201, lambda b: b == b""),
    "created_json": (201, lambda b: json.loads(b) == {"created": 2}),
    "accepted": (202, lambda b: b == b""),
    "accepted_json": (202, lambda b: json.loads(b) == {"status": "queued", "count": 2}),
    "no_content": (204, lambda b: b == b""),
    "text": (200, lambda b: b == b"OK\n"),
    "html": (200, lambda b: b.startswith(b"<!doctype html>")),
    "unknown_json": (200, lambda b: json.loads(b) == {"data": {"accepted": 2}, "version": 2}),
    "empty_list": (200, lambda b: json.loads(b) == []),
    "empty_object": (200, lambda b: json.loads(b) == {}),
    "json_string": (200, lambda b: json.loads(b) == "OK"),
    "message": (200, lambda b: json.loads(b) == {"message": "ok", "flattrs": 2}),
    "other_list": (200, lambda b: [r["status"] for r in json.loads(b)] == ["ok", "ok"]),
    "other_results": (200, lambda b: "link" in json.loads(b)["results"][0]),
}


@pytest.mark.parametrize("style", sorted(BULK_STYLES))
def test_bulk_answer_styles_store_the_flattrs(site: FakeSite, style: str) -> None:
    assert site.configure(bulk_answer=style)["bulk_answer"] == style
    user = site.create_user(f"style-{style}")
    items = [{"url": f"https://style.example/{style}/{i}"} for i in range(2)]
    answer = call(site, "POST", BULK, token=user["token"], body=items)
    status, check = BULK_STYLES[style]
    assert answer.status == status
    assert check(answer.body), answer.body
    flattrs = call(site, "GET", "/rest/v2/user/flattrs", token=user["token"]).json()
    assert sorted(f["thing"]["url"] for f in flattrs) == sorted(i["url"] for i in items)


def test_bulk_answer_style_is_checked_and_reset(site: FakeSite) -> None:
    from fake_flattr.api.bulk import STYLES

    assert sorted(STYLES) == sorted(BULK_STYLES)  # every style is tested above
    with pytest.raises(FakeSiteError) as err:
        site.configure(bulk_answer="teapot")
    assert err.value.status == 400 and "documented" in err.value.body["description"]
    site.configure(bulk_answer="empty")
    site.reset()
    assert site.configure()["bulk_answer"] == "documented"
