"""The fake site as safe as a real one: redirects stay on the origin, the consent and
log-in pages refuse framing, and the two RFC 6749 choices of docs/fake-site.md."""

from __future__ import annotations

import base64
import re
from urllib.parse import parse_qs, quote, urljoin, urlsplit

import pytest

from fake_flattr.pages import DEFAULT_HANDSHAKE_TIMEOUT_MS
from fake_flattr.redirects import local_path, safe_next
from tests.support.fake_site import FakeSite
from tests.unit.fake_site.client import Answer, call
from tests.unit.fake_site.test_oauth_partner_cli import BASIC, REDIRECT, authorize, login

ORIGIN = "https://flattr.com"

# Values an attacker may put in ?next= or the form field. Each would leave the
# origin if a browser were sent to it after cleaning (TAB/CR/LF removed, "\" read
# as "/"), or is plainly another origin.
HOSTILE_NEXT = [
    "/\t/evil.example/x",
    "/\r/evil.example/x",
    "/\n/evil.example/x",
    "/\r\n/evil.example/x",
    "\t//evil.example/x",
    "/\x00/evil.example/x",
    "/\x0b/evil.example/x",
    "/\x7f/evil.example/x",
    "/ /evil.example",
    " //evil.example",
    "/\\evil.example",
    "\\/evil.example",
    "\\\\evil.example",
    "/\\/evil.example",
    "//evil.example",
    "///evil.example",
    "////evil.example/x",
    "//evil.example@flattr.com/",
    "https://evil.example/",
    "https:evil.example",
    "https:/evil.example",
    "http://evil.example",
    "HTTPS://evil.example",
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "evil.example",
    "/\u2215evil.example",
    "/\uff0f/evil.example",
    "/caf\u00e9",
    "",
]

# Raw query strings (percent-encoded as in a link): decoded by the server first,
# then refused as above.
HOSTILE_QUERIES = [
    "next=/%09/evil.example/x",
    "next=/%0d/evil.example/x",
    "next=/%0a/evil.example/x",
    "next=%2F%2Fevil.example",
    "next=/%5Cevil.example",
    "next=%5C%5Cevil.example",
    "next=%09%2F%2Fevil.example",
    "next=https%3A%2F%2Fevil.example",
    "next=/%E2%88%95evil.example",
]

# Same-origin paths, accepted exactly as given (nothing removed or decoded).
LOCAL_NEXT = [
    "/settings",
    "/oauth/ext?timeout=300",
    "/submit/auto?url=https%3A%2F%2Fa.example%2F&title=A",
    "/%2F%2Fevil.example",  # an encoded slash stays a path segment on this origin
    "/%09/evil.example",
    "/.//evil.example",
    "/a/..//evil.example",
    "/x#frag",
]


def browser_target(location: str, base: str = ORIGIN + "/login") -> str:
    """Where a browser goes for ``Location``: the URL Standard's cleaning (TAB, CR, LF
    removed; leading/trailing C0 and space trimmed; ``\\`` read as ``/`` in special
    URLs), then resolution against the page."""
    cleaned = re.sub(r"[\t\n\r]", "", location).strip("".join(map(chr, range(0x21))))
    return urljoin(base, cleaned.replace("\\", "/"))


def same_origin(location: str) -> bool:
    target = urlsplit(browser_target(location))
    return f"{target.scheme}://{target.netloc}" == ORIGIN


def test_browser_target_model_sees_the_reported_hole() -> None:
    # The model used below would have caught the old behaviour: "/\t/host" -> "//host".
    assert not same_origin("/\t/evil.example/x")
    assert not same_origin("/\\evil.example")
    assert same_origin("/settings")


@pytest.mark.parametrize("value", HOSTILE_NEXT)
def test_local_path_refuses_hostile_values(value: str) -> None:
    assert local_path(value) is None
    assert safe_next(value) == "/"


@pytest.mark.parametrize("value", LOCAL_NEXT)
def test_local_path_keeps_local_paths_verbatim(value: str) -> None:
    assert local_path(value) == value
    assert same_origin(value)


def test_local_path_refuses_non_strings_and_overlong_values() -> None:
    assert local_path(None) is None
    assert local_path(["/settings"]) is None
    assert local_path("/" + "a" * 2048) is None
    assert local_path("/" + "a" * 2047) == "/" + "a" * 2047


@pytest.mark.parametrize("value", HOSTILE_NEXT)
def test_login_post_never_leaves_the_origin(site: FakeSite, value: str) -> None:
    answer = call(site, "POST", "/login", server="site",
                  form={"username": "alice", "password": "alice", "next": value})
    assert answer.status == 303
    assert answer.header("Location") == "/"
    assert same_origin(answer.header("Location") or "")


@pytest.mark.parametrize("query", HOSTILE_QUERIES)
def test_login_link_with_encoded_next_never_leaves_the_origin(site: FakeSite,
                                                              query: str) -> None:
    page = call(site, "GET", "/login?" + query, server="site")
    assert page.status == 200
    hidden = re.search(rb'name="next" value="([^"]*)"', page.body)
    assert hidden is not None and hidden.group(1) == b"/"
    # The form as a browser posts it, with the value decoded from the link.
    value = parse_qs(query)["next"][0]
    answer = call(site, "POST", "/login", server="site",
                  form={"username": "alice", "password": "alice", "next": value})
    assert answer.status == 303 and answer.header("Location") == "/"


@pytest.mark.parametrize("value", LOCAL_NEXT)
def test_login_goes_to_a_local_next_exactly(site: FakeSite, value: str) -> None:
    page = call(site, "GET", "/login?next=" + quote(value, safe=""), server="site")
    assert f'name="next" value="{value}"'.replace("&", "&amp;").encode() in page.body
    answer = call(site, "POST", "/login", server="site",
                  form={"username": "alice", "password": "alice", "next": value})
    assert answer.status == 303
    assert answer.header("Location") == value
    assert same_origin(value)


def test_pages_needing_login_send_back_to_themselves(site: FakeSite) -> None:
    anonymous = call(site, "GET", "/settings/account/subscription", server="site")
    assert anonymous.status == 303
    location = anonymous.header("Location") or ""
    assert urlsplit(location).path == "/login"
    nxt = parse_qs(urlsplit(location).query)["next"][0]
    answer = call(site, "POST", "/login", server="site",
                  form={"username": "alice", "password": "alice", "next": nxt})
    assert answer.header("Location") == "/settings/account/subscription"


# -- framing ---------------------------------------------------------------------


def assert_not_framable(answer: Answer) -> None:
    assert answer.header("X-Frame-Options") == "DENY"
    csp = answer.header("Content-Security-Policy") or ""
    assert "frame-ancestors 'none'" in csp


def test_consent_and_login_pages_refuse_framing(site: FakeSite) -> None:
    assert_not_framable(call(site, "GET", "/login", server="site"))
    wrong = call(site, "POST", "/login", server="site",
                 form={"username": "alice", "password": "nope", "next": "/"})
    assert wrong.status == 401
    assert_not_framable(wrong)
    cookie = login(site, "alice")
    query = ("response_type=code&client_id=demo-client&scope=flattr&redirect_uri="
             + quote(REDIRECT, safe=""))
    consent = call(site, "GET", "/oauth/authorize?" + query, server="site",
                   headers={"Cookie": cookie})
    assert consent.status == 200 and b'id="allow"' in consent.body
    assert_not_framable(consent)
    for path in ("/oauth/ext", "/settings", "/settings/account/subscription"):
        answer = call(site, "GET", path, server="site", headers={"Cookie": cookie})
        assert answer.status == 200, path
        assert_not_framable(answer)


def test_public_pages_stay_embeddable(site: FakeSite) -> None:
    thing = call(site, "GET", "/thing/423405", server="site")
    assert thing.status == 200
    assert thing.header("X-Frame-Options") is None


# -- RFC 6749 choices --------------------------------------------------------------


def code_for(site: FakeSite) -> str:
    cookie = login(site, "alice")
    location = authorize(site, cookie).header("Location") or ""
    return parse_qs(urlsplit(location).query)["code"][0]


def token_request(site: FakeSite, body: dict[str, str], auth: str | None = BASIC) -> Answer:
    headers = {"Authorization": auth} if auth else {}
    return call(site, "POST", "/oauth/token", server="api", headers=headers, body=body)


def test_wrong_redirect_uri_does_not_use_up_the_code(site: FakeSite) -> None:
    code = code_for(site)
    grant = {"code": code, "grant_type": "authorization_code"}
    for wrong in ("http://localhost/", "http://evil.example", ""):
        refused = token_request(site, {**grant, "redirect_uri": wrong})
        assert refused.status == 400
        assert refused.json()["error"] == "invalid_grant"
    missing = token_request(site, grant)
    assert missing.status == 400
    ok = token_request(site, {**grant, "redirect_uri": REDIRECT})
    assert ok.status == 200
    token = ok.json()["access_token"]
    # Used now: a second correct request is a replay and revokes the token.
    replay = token_request(site, {**grant, "redirect_uri": REDIRECT})
    assert replay.status == 400
    assert "already used" in replay.json()["error_description"]
    assert call(site, "GET", "/rest/v2/user", token=token).status == 401


def test_another_clients_request_does_not_use_up_the_code(site: FakeSite) -> None:
    site.admin("POST", "apps", {"client_id": "other", "client_secret": "other-secret",
                                "redirect_uri": REDIRECT})
    code = code_for(site)
    grant = {"code": code, "grant_type": "authorization_code", "redirect_uri": REDIRECT}
    other = "Basic " + base64.b64encode(b"other:other-secret").decode()
    refused = token_request(site, grant, auth=other)
    assert refused.status == 400
    assert refused.json()["error"] == "invalid_grant"
    assert token_request(site, grant).status == 200


def test_basic_and_a_body_secret_together_are_refused(site: FakeSite) -> None:
    code = code_for(site)
    grant = {"code": code, "grant_type": "authorization_code", "redirect_uri": REDIRECT}
    both = token_request(site, {**grant, "client_id": "demo-client",
                                "client_secret": "demo-secret"})
    assert both.status == 400
    body = both.json()
    assert body["error"] == "invalid_request"
    assert "more than one client authentication method" in body["error_description"]
    # Also when the body secret is wrong or empty: two methods is the fault.
    for secret in ("wrong", ""):
        again = token_request(site, {**grant, "client_secret": secret})
        assert again.json()["error"] == "invalid_request"
    # Form-encoded the same.
    form = call(site, "POST", "/oauth/token", server="site", headers={"Authorization": BASIC},
                form={**grant, "client_secret": "demo-secret"})
    assert form.status == 400 and form.json()["error"] == "invalid_request"
    # The refused requests did not use the code up; Basic alone works.
    assert token_request(site, grant).status == 200


def test_body_secret_alone_is_not_a_supported_method(site: FakeSite) -> None:
    code = code_for(site)
    answer = token_request(site, {"code": code, "grant_type": "authorization_code",
                                  "redirect_uri": REDIRECT, "client_id": "demo-client",
                                  "client_secret": "demo-secret"}, auth=None)
    assert answer.status == 401
    assert answer.json()["error"] == "invalid_client"


# Ids no thing can have: "²" and the Arabic-Indic one (U+0661) are digits to
# str.isdigit(), "²" no number to int(); 20 digits overflow SQLite's INTEGER;
# 5,000 digits are refused by int() itself.
ODD_IDS = ["%C2%B2", "%D9%A1", "99999999999999999999", "9" * 5000, "-1", "1e3"]


@pytest.mark.parametrize("raw", ODD_IDS)
def test_an_id_no_thing_can_have_is_not_found(site: FakeSite, raw: str) -> None:
    token = str(site.create_user(f"odd-ids-{ODD_IDS.index(raw)}", active=True)["token"])
    for method, path, on in [("GET", f"/rest/v2/things/{raw}", "api"),
                             ("GET", f"/rest/v2/things/423405,{raw}", "api"),
                             ("POST", f"/rest/v2/things/{raw}/flattr", "api"),
                             ("GET", f"/thing/{raw}", "site"),
                             ("GET", f"/claim/{raw}", "site")]:
        answer = call(site, method, path, token=token if on == "api" else None, server=on)
        assert answer.status == 404, (method, path, answer.status, answer.body[:200])


@pytest.mark.parametrize("raw", ["%C2%B2", "99999999999999999999", "9" * 5000])
def test_an_odd_count_is_an_invalid_parameter(site: FakeSite, raw: str) -> None:
    answer = call(site, "GET", f"/rest/v2/things/search?count={raw}")
    assert answer.status == 400 and answer.json()["error"] == "invalid_parameters", answer


@pytest.mark.parametrize("raw", ["%C2%B2", "9" * 5000, "0", "60001"])
def test_an_odd_handshake_timeout_is_ignored(site: FakeSite, raw: str) -> None:
    """The page's ?timeout= (1-60000 ms) is read as a whole number or not at all."""
    cookie = {"Cookie": login(site, "alice")}
    shown = call(site, "GET", "/oauth/ext?timeout=5000", server="site", headers=cookie)
    assert shown.status == 200 and b'"handshakeTimeout": 5000' in shown.body  # the control
    answer = call(site, "GET", f"/oauth/ext?timeout={raw}", server="site", headers=cookie)
    assert answer.status == 200, answer.body[:200]
    default = f'"handshakeTimeout": {DEFAULT_HANDSHAKE_TIMEOUT_MS}'.encode()
    assert default in answer.body
