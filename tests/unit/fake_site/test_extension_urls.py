"""What the original Flattr extension asks of flattr.com besides the handshake:
files.flattr.com/domains.json (HEAD, conditional GET, admin replacement), the
subscription page, the dashboard and consent pages, and the page's handshake
failure reports (docs/fake-site.md, "URLs of the original extension")."""

from __future__ import annotations

import json
import time
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import pytest

from tests.support.fake_site import FakeSite, FakeSiteError
from tests.unit.fake_site.client import Answer, call
from tests.unit.fake_site.test_oauth_partner_cli import login

DOMAINS = "/domains.json"


def get(site: FakeSite, headers: dict[str, str] | None = None, method: str = "GET") -> Answer:
    return call(site, method, DOMAINS, server="files", headers=headers)


def original_accepts(document: Any) -> bool:
    """The original extension's check of a downloaded list: a status object and an
    author array (src/lib/background/domains/validate.js, restated)."""
    return isinstance(document, dict) and bool(document.get("status")) and isinstance(
        document.get("author"), list)


def last_modified(answer: Answer) -> float:
    return parsedate_to_datetime(answer.header("Last-Modified") or "").timestamp()


def test_domains_json_is_in_the_original_format(site: FakeSite) -> None:
    answer = get(site)
    assert answer.status == 200
    assert (answer.header("Content-Type") or "").startswith("application/json")
    document = answer.json()
    assert original_accepts(document)
    assert all(isinstance(d, str) for d in document["author"])
    # Status tree: labels read right to left, numbers 0-3 as leaves.
    assert document["status"]["com"]["example"] == 1
    assert document["status"]["com"]["blocked-example"] == 3
    etag = answer.header("ETag") or ""
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 2
    assert last_modified(answer) > 0
    assert site.journal(server="files", method="GET", path=DOMAINS)


def test_head_gives_the_validators_without_a_body(site: FakeSite) -> None:
    full = get(site)
    head = get(site, method="HEAD")
    assert head.status == 200 and head.body == b""
    assert head.header("ETag") == full.header("ETag")
    assert head.header("Last-Modified") == full.header("Last-Modified")
    assert site.journal(server="files", method="HEAD", path=DOMAINS)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_conditional_requests(site: FakeSite, method: str) -> None:
    first = get(site)
    etag, stamp = first.header("ETag") or "", first.header("Last-Modified") or ""
    cases: list[tuple[dict[str, str], int]] = [
        ({"If-None-Match": etag}, 304),
        ({"If-None-Match": "W/" + etag}, 304),  # weak comparison for If-None-Match
        ({"If-None-Match": f'"other", {etag}'}, 304),
        ({"If-None-Match": "*"}, 304),
        ({"If-None-Match": '"other"'}, 200),
        ({"If-Modified-Since": stamp}, 304),
        ({"If-Modified-Since": "Tue, 01 Jan 2000 00:00:00 GMT"}, 200),
        ({"If-Modified-Since": "not a date"}, 200),
        # If-None-Match decides when both are present (RFC 9110 13.2.2).
        ({"If-None-Match": '"other"', "If-Modified-Since": stamp}, 200),
        ({"If-None-Match": etag, "If-Modified-Since": "Tue, 01 Jan 2000 00:00:00 GMT"}, 304),
    ]
    for headers, status in cases:
        answer = get(site, headers, method=method)
        assert answer.status == status, headers
        assert answer.header("ETag") == etag
        if status == 304:
            assert answer.body == b""


def test_admin_replaces_the_list_and_head_tells_it_changed(site: FakeSite) -> None:
    before = get(site, method="HEAD")
    replacement = {"author": ["example.net"], "status": {"net": {"example": 2}}}
    described = site.admin("POST", "files/domains", {"domains": replacement})
    assert described["etag"] != before.header("ETag")
    after = get(site, method="HEAD")
    assert after.header("ETag") == described["etag"]
    assert last_modified(after) > last_modified(before)  # even within the same second
    assert last_modified(after) == described["last_modified"]
    # The original's check: Last-Modified newer than the last download -> GET.
    assert get(site, {"If-None-Match": before.header("ETag") or ""}).json() == replacement
    assert get(site, {"If-None-Match": described["etag"]}).status == 304
    assert site.admin("GET", "files/domains") == described
    # Two replacements in a row: each one later than the one before.
    again = site.admin("POST", "files/domains", {"domains": replacement})
    assert again["last_modified"] > described["last_modified"]
    # Reset brings back the default list.
    site.reset(seed=True)
    assert get(site).json() != replacement and original_accepts(get(site).json())


def test_admin_sets_last_modified_and_follows_the_server_clock(site: FakeSite) -> None:
    fixed = site.admin("POST", "files/domains", {"domains": {"author": [], "status": {"a": 1}},
                                                 "last_modified": 1_500_000_000})
    assert fixed["last_modified"] == 1_500_000_000
    answer = get(site)
    assert answer.header("Last-Modified") == "Fri, 14 Jul 2017 02:40:00 GMT"
    site.admin("POST", "clock", {"advance": 86_400})
    later = site.admin("POST", "files/domains", {"domains": {"author": [], "status": {"a": 2}}})
    assert later["last_modified"] >= int(time.time()) + 86_000


def test_admin_serves_a_broken_list_verbatim_on_request(site: FakeSite) -> None:
    site.admin("POST", "files/domains", {"raw": "{not json"})
    answer = get(site)
    assert answer.status == 200 and answer.body == b"{not json"


@pytest.mark.parametrize("body", [
    {"domains": []},
    {"domains": {"author": []}},
    {"domains": {"status": {}, "author": "github.com"}},
    {"domains": {"status": {"com": 1}, "author": [1]}},
    {"domains": {"status": {"com": 1}, "author": [], "video": "x"}},
    {"domains": {"status": {}, "author": []}, "raw": "{}"},
    {},
    {"raw": 5},
    {"domains": {"status": {"com": 1}, "author": []}, "last_modified": "yesterday"},
    {"domains": {"status": {"com": 1}, "author": []}, "last_modified": -1},
])
def test_admin_refuses_a_list_the_original_would_reject(site: FakeSite,
                                                        body: dict[str, Any]) -> None:
    before = get(site)
    with pytest.raises(FakeSiteError) as error:
        site.admin("POST", "files/domains", body)
    assert error.value.status == 400
    assert get(site).body == before.body


def test_files_host_serves_only_the_list_and_can_be_scripted(site: FakeSite) -> None:
    assert call(site, "GET", "/", server="files").status == 404
    assert call(site, "GET", "/settings", server="files").status == 404
    site.script("GET", DOMAINS, [{"status": 503, "headers": {"Retry-After": "1"}}],
                server="files")
    assert get(site).status == 503
    assert get(site).status == 200


def test_http_dates_are_imf_fixdate(site: FakeSite) -> None:
    stamp = get(site).header("Last-Modified") or ""
    parsed = parsedate_to_datetime(stamp)
    assert format_datetime(parsed, usegmt=True) == stamp


# -- pages ---------------------------------------------------------------------------


def test_subscription_page_shows_and_changes_the_subscription(site: FakeSite) -> None:
    anonymous = call(site, "GET", "/settings/account/subscription", server="site")
    assert anonymous.status == 303
    cookie = login(site, "bob")  # inactive
    page = call(site, "GET", "/settings/account/subscription", server="site",
                headers={"Cookie": cookie})
    assert page.status == 200
    assert b'id="subscription-status"' in page.body and b'data-state="inactive"' in page.body
    assert b'id="subscribe"' in page.body and b'id="unsubscribe"' in page.body
    assert b'data-page="subscription"' in page.body
    site.set_subscription("bob", True)
    page = call(site, "GET", "/settings/account/subscription", server="site",
                headers={"Cookie": cookie})
    assert b'data-state="active"' in page.body and b"Subscription active" in page.body


def test_dashboard_and_consent_pages(site: FakeSite) -> None:
    assert call(site, "GET", "/dashboard/contributor", server="site").status == 303
    cookie = login(site, "qzio")
    page = call(site, "GET", "/dashboard/contributor", server="site", headers={"Cookie": cookie})
    assert page.status == 200 and b'id="flattr-total"' in page.body
    consent = call(site, "GET", "/privacy/consent", server="site")
    assert consent.status == 200 and b'id="consent"' in consent.body


def test_handshake_failure_reports_are_journalled(site: FakeSite) -> None:
    report = {"page": "oauth-ext", "state": "unreadable-detail",
              "message": "cannot be read", "advice": "cloneInto", "timeoutMs": 300}
    answer = call(site, "POST", "/handshake/failure", server="site", body=report)
    assert answer.status == 204
    entry = site.wait_for(1, server="site", method="POST", path="/handshake/failure")[0]
    assert json.loads(entry["body"]) == report


@pytest.mark.parametrize("body", [
    b"not json", b"[]", json.dumps({"state": "happy", "message": "x"}).encode(),
    json.dumps({"state": "failed"}).encode(),
    json.dumps({"state": "failed", "message": "x" * 9000}).encode(),
])
def test_bad_failure_reports_are_refused(site: FakeSite, body: bytes) -> None:
    answer = call(site, "POST", "/handshake/failure", server="site", body=body)
    assert answer.status == 400 and answer.json()["error"] == "invalid_request"


def test_certificates_name_the_files_host_and_old_ones_are_renewed(tmp_path: Any,
                                                                  monkeypatch: Any) -> None:
    from cryptography import x509

    from fake_flattr import certs

    def names(path: Any) -> set[str]:
        leaf = x509.load_pem_x509_certificates(path.read_bytes())[0]
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return set(sans.get_values_for_type(x509.DNSName))

    # A data directory kept from a version without files.flattr.com...
    monkeypatch.setattr(certs, "SAN_NAMES", ("flattr.com", "api.flattr.com", "localhost"))
    old = certs.ensure_certs(tmp_path)
    assert "files.flattr.com" not in names(old.cert)
    monkeypatch.undo()
    # ...gets a new leaf (and CA) with every name on the next start; then it is kept.
    new = certs.ensure_certs(tmp_path)
    assert "files.flattr.com" in names(new.cert) and new.spki != old.spki
    assert certs.ensure_certs(tmp_path).spki == new.spki


@pytest.mark.parametrize(("query", "expected"), [
    ("timeout=300", 300), ("timeout=60000", 60000), ("timeout=0", 3000),
    ("timeout=60001", 3000), ("timeout=%C2%B2", 3000), ("timeout=-5", 3000),
    ("timeout=1e3", 3000), ("timeout=", 3000),
])
def test_handshake_timeout_parameter(site: FakeSite, query: str, expected: int) -> None:
    cookie = login(site, "alice")
    for path in ("/oauth/ext", "/settings"):
        page = call(site, "GET", f"{path}?{query}", server="site", headers={"Cookie": cookie})
        assert page.status == 200, (path, query)
        assert f'"handshakeTimeout": {expected}'.encode() in page.body
