"""The embedded button's server side (api-v2/button.md; docs/fake-site.md, "Partner
integration"): definition checks, the loader on HTTPS and HTTP, the button iframe,
the connect window, and the partner web-hook receiver."""

from __future__ import annotations

import hashlib
import html
import http.client
import json
import re
import socket
import urllib.request
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from fake_flattr.button import (
    DefinitionError,
    clean_text,
    is_supported_owner,
    parse_definition,
)
from fake_flattr.hook_receiver import HookReceiver, HookTimeout
from fake_flattr.urls import parse_auto_submit
from flattr_testing.fake_site import FakeSite
from tests.unit.fake_site.client import call

MD5 = hashlib.md5(b"someone@example.com").hexdigest()  # noqa: S324 - the documented form


# -- definitions (pure) ---------------------------------------------------------

@pytest.mark.parametrize(("params", "code", "words"), [
    ({}, "invalid_definition", "url is required"),
    ({"url": "  "}, "invalid_definition", "url is required"),
    ({"url": "ftp://example.com/"}, "invalid_definition", "absolute http"),
    ({"url": "/relative"}, "invalid_definition", "absolute http"),
    ({"url": "https://a.example/", "category": "music"}, "invalid_definition",
     "category 'music' is not one of the available categories"),
    ({"url": "https://a.example/", "language": "xx_XX"}, "invalid_definition",
     "language 'xx_XX'"),
    ({"url": "https://a.example/", "button": "large"}, "invalid_definition",
     "button must be compact or default"),
    ({"url": "https://a.example/", "popout": "yes"}, "invalid_definition",
     "popout must be 0 or 1"),
    ({"url": "https://a.example/", "hidden": "2"}, "invalid_definition", "hidden must be 0 or 1"),
    ({"url": "https://a.example/", "title": "x" * 101}, "invalid_definition",
     "title is 101 characters long; the maximum is 100"),
    ({"url": "https://a.example/", "description": "y" * 1001}, "invalid_definition",
     "the maximum is 1000"),
    ({"url": "https://a.example/", "uid": "bob", "owner": "twitter:user:id:1"},
     "invalid_definition", "not both"),
    ({"url": "https://a.example/", "owner": "facebook:user:1"}, "unsupported_owner",
     "'facebook:user:1' is not a supported identifier"),
])
def test_invalid_definitions_name_the_bad_parameter(params: dict[str, str], code: str,
                                                    words: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(params)
    assert caught.value.code == code
    assert words in caught.value.message


@pytest.mark.parametrize("owner", [f"email:{MD5}", "twitter:user:id:123",
                                   "partner:customnamespace:123"])
def test_documented_owner_identifiers_are_supported(owner: str) -> None:
    assert is_supported_owner(owner)
    assert parse_definition({"url": "https://a.example/", "owner": owner}).owner == owner


@pytest.mark.parametrize("owner", ["email:someone@example.com", "email:" + "g" * 32,
                                   "twitter:123", "twitter:user:id:abc", "partner:ns",
                                   "partner::1", "bob", "mailto:a@b.c"])
def test_other_owner_forms_are_not(owner: str) -> None:
    assert not is_supported_owner(owner)


def test_clean_text_strips_html_and_keeps_br_as_newlines() -> None:
    assert clean_text("  <b>Bold</b>   text<br>next<br/>last<br\\> &amp; more ") == (
        "Bold text\nnext\nlast\n& more")


def test_definition_defaults_and_auto_submit_url() -> None:
    definition = parse_definition({
        "url": "https://blog.example/post?id=1#top", "owner": "twitter:user:id:123",
        "title": "A <em>fine</em> post", "description": "Line one<br>line two",
        "category": "text", "language": "sv-SE", "tags": "tag, tag2 ,,tag3", "hidden": "1",
    })
    assert (definition.button, definition.popout, definition.language) == (
        "default", True, "sv_SE")
    auto = parse_auto_submit(definition.auto_submit_url())
    assert auto is not None
    assert (auto.url, auto.owner, auto.user_id) == (
        "https://blog.example/post?id=1#top", "twitter:user:id:123", None)
    assert (auto.title, auto.description, auto.category, auto.language) == (
        "A fine post", "Line one\nline two", "text", "sv_SE")
    assert auto.tags == ("tag", "tag2", "tag3") and auto.hidden is True
    by_uid = parse_auto_submit(parse_definition({"url": "https://x.example/",
                                                 "uid": "flattr"}).auto_submit_url())
    assert by_uid is not None and by_uid.user_id == "flattr" and by_uid.owner is None


# -- the loader, HTTPS and HTTP ---------------------------------------------------

def _http_get(base: str, path: str) -> tuple[int, dict[str, str], str]:
    with urllib.request.urlopen(base + path, timeout=10) as resp:  # noqa: S310 - loopback
        return resp.status, dict(resp.headers.items()), resp.read().decode()


def test_loader_served_on_https_and_http(site: FakeSite) -> None:
    secure = call(site, "GET", "/js/0.6/load.js?mode=auto&uid=flattr")
    assert secure.status == 200
    assert (secure.header("Content-Type") or "").startswith("text/javascript")
    assert b"window.FlattrLoader" in secure.body
    assert site.api_http.startswith("http://127.0.0.1:")
    status, headers, text = _http_get(site.api_http, "/js/0.6/load.js?mode=manual")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert text.encode() == secure.body


def test_http_port_serves_buttons_only(site: FakeSite) -> None:
    status, _, text = _http_get(site.api_http, "/button/view/?url=https://a.example/&uid=flattr")
    assert status == 200 and 'data-state="loading"' in text
    with pytest.raises(urllib.error.HTTPError) as caught:
        _http_get(site.api_http, "/rest/v2/things/313733")
    assert caught.value.code == 404


# -- the button iframe ---------------------------------------------------------------

def _view(site: FakeSite, **params: str) -> tuple[int, str]:
    answer = call(site, "GET", "/button/view/?" + urlencode(params))
    return answer.status, answer.body.decode()


def _attr(page: str, name: str) -> str:
    found = re.search(rf'<body [^>]*{name}="([^"]*)"', page)
    assert found, f"no {name} on the body of {page[:300]}"
    return html.unescape(found[1])


def test_view_shows_the_count_of_an_existing_thing(site: FakeSite) -> None:
    thing = call(site, "GET", "/rest/v2/things/313733").json()
    status, page = _view(site, url=thing["url"], button="compact")
    assert status == 200
    assert _attr(page, "data-state") == "loading" and _attr(page, "class") == "compact"
    assert _attr(page, "data-count") == str(thing["flattrs"]) and thing["flattrs"] > 0
    assert f'<span id="count" title="flattrs">{thing["flattrs"]}</span>' in page
    assert _attr(page, "data-thing") == "313733"
    framed = call(site, "GET", "/button/view/?" + urlencode({"url": thing["url"]}))
    assert framed.header("X-Frame-Options") is None
    assert framed.header("Content-Security-Policy") == "frame-ancestors *"


def test_view_of_a_new_thing_counts_zero_and_carries_its_auto_submit_url(site: FakeSite) -> None:
    status, page = _view(site, url="https://new.example/", owner="twitter:user:id:5",
                         title="New one", popout="0")
    assert status == 200 and _attr(page, "data-count") == "0"
    assert _attr(page, "data-popout") == "0" and 'id="popout"' not in page
    config = html.unescape(re.search(r'data-config="([^"]*)"', page)[1])  # type: ignore[index]
    assert "owner=twitter%3Auser%3Aid%3A5" in config and "title=New+one" in config


@pytest.mark.parametrize(("params", "code", "words"), [
    ({"title": "no url"}, "invalid_definition", "url is required"),
    ({"url": "https://a.example/", "uid": "flattr", "category": "bogus"},
     "invalid_definition", "category &#x27;bogus&#x27; is not one of"),
    ({"url": "https://a.example/", "owner": "myspace:7"}, "unsupported_owner",
     "is not a supported identifier"),
    ({"url": "https://a.example/", "uid": "nosuchuser"}, "not_found",
     "no Flattr user named &#x27;nosuchuser&#x27;"),
    ({"url": "https://a.example/"}, "invalid_definition", "uid or owner is required"),
])
def test_view_shows_a_specific_error(site: FakeSite, params: dict[str, str], code: str,
                                     words: str) -> None:
    status, page = _view(site, **params)
    assert status == 200  # an iframe must render its error, not a browser error page
    assert _attr(page, "data-state") == "error" and _attr(page, "data-error") == code
    assert 'role="alert"' in page and words in page


# -- the connect window ---------------------------------------------------------------

def _login(site: FakeSite, username: str) -> str:
    answer = call(site, "POST", "/login", server="site",
                  form={"username": username, "password": username, "next": "/"})
    assert answer.status == 303
    cookie = answer.header("Set-Cookie") or ""
    return cookie.split(";")[0]


def test_connect_refuses_origins_that_are_not_buttons(site: FakeSite) -> None:
    cookie = _login(site, "alice")
    for origin in ("https://evil.example", "", "https://api.flattr.com.evil.example"):
        answer = call(site, "GET", "/button/connect?" + urlencode({"origin": origin}),
                      server="site", headers={"Cookie": cookie})
        assert answer.status == 400 and b"not a button origin" in answer.body
        assert b"data-connect" not in answer.body  # no token minted or shown


def test_connect_sends_a_visitor_to_log_in_and_back(site: FakeSite) -> None:
    path = "/button/connect?" + urlencode({"origin": "https://api.flattr.com"})
    answer = call(site, "GET", path, server="site")
    assert answer.status == 303
    location = answer.header("Location") or ""
    assert parse_qs(urlsplit(location).query)["next"] == [path]


def _connect_token(site: FakeSite, username: str, origin: str) -> str:
    cookie = _login(site, username)
    answer = call(site, "GET", "/button/connect?" + urlencode({"origin": origin}),
                  server="site", headers={"Cookie": cookie})
    assert answer.status == 200, answer.body
    assert answer.header("X-Frame-Options") == "DENY"
    assert answer.header("Cross-Origin-Opener-Policy") == "unsafe-none"
    data = html.unescape(re.search(rb'data-connect="([^"]*)"', answer.body)[1].decode())  # type: ignore[index]
    parsed: dict[str, Any] = json.loads(data)
    assert parsed["origin"] == origin and parsed["username"] == username
    return str(parsed["token"])


def test_partner_chain_without_a_browser(site: FakeSite) -> None:
    """Definition -> connect token -> flattr -> web hook -> verify -> claimed count."""
    partner = site.create_user("shopco")
    site.configure(webhook_retry_delays=[0.05])
    with HookReceiver() as hooks:
        site.admin("POST", "partners", {"prefix": "partner:shop", "hook_url": hooks.url,
                                        "username": "shopco"})
        definition = parse_definition({"url": "https://shop.example/item/7",
                                       "owner": "partner:shop:7", "title": "Item seven",
                                       "description": "A thing<br>to flattr", "tags": "a,b",
                                       "category": "software", "language": "de_DE"})
        token = _connect_token(site, "alice", "http://api.flattr.com")
        flattred = call(site, "POST", "/rest/v2/flattr", token=token,
                        body={"url": definition.auto_submit_url()})
        assert flattred.status == 200, flattred.body
        thing_id = flattred.json()["thing"]["id"]
        thing = call(site, "GET", f"/rest/v2/things/{thing_id}").json()
        assert (thing["title"], thing["description"], thing["category"], thing["language"],
                thing["tags"], thing["owner"]) == (
            "Item seven", "A thing\nto flattr", "software", "de_DE", ["a", "b"], None)
        event = hooks.wait_for("pendingclickcreate")
        assert event.form == {"_event": "pendingclickcreate", "thing_id": str(thing_id),
                              "thing_owner_id": "partner:shop:7", "thing_clicks_total": "1",
                              "flattrer_username": "alice",
                              "claim_url": f"https://flattr.com/claim/{thing_id}"}
        again = call(site, "POST", "/rest/v2/flattr", token=token,
                     body={"url": definition.auto_submit_url()})
        assert again.status == 403 and again.json()["error"] == "flattr_once"
    site.create_user("shopper")
    verified = call(site, "POST", "/rest/v2/users/shopper/verify", token=partner["token"],
                    body={"identity": "partner:shop:7"})
    assert verified.status == 200
    _, page = _view(site, url="https://shop.example/item/7")
    assert _attr(page, "data-claimed") == "true" and _attr(page, "data-count") == "1"
    assert '<p class="owner">by shopper</p>' in page


# -- the web-hook receiver --------------------------------------------------------------

def _post(url: str, body: bytes, content_type: str) -> int:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request("POST", parts.path, body=body, headers={"Content-Type": content_type})
        return conn.getresponse().status
    finally:
        conn.close()


def test_receiver_checks_event_and_form_encoding() -> None:
    with HookReceiver() as hooks:
        assert _post(hooks.url, b"thing_id=1", "application/x-www-form-urlencoded") == 400
        assert _post(hooks.url, b'{"_event": "x"}', "application/json") == 400
        assert _post(hooks.url, b"_event=pendingclickcreate&thing_id=9",
                     "application/x-www-form-urlencoded; charset=utf-8") == 200
        assert [r.reason for r in hooks.rejected] == [
            "no _event parameter in the form",
            "Content-Type is 'application/json', expected application/x-www-form-urlencoded"]
        assert hooks.wait_for("pendingclickcreate").form["thing_id"] == "9"
        with pytest.raises(HookTimeout, match="0 of 1 'otherevent' posts"):
            hooks.wait_for("otherevent", timeout=0.1)


def test_receiver_answers_with_scripted_statuses_and_the_fake_retries(site: FakeSite) -> None:
    site.configure(webhook_retry_delays=[0.05, 0.05])
    with HookReceiver() as hooks:
        hooks.answer_with(503)
        site.admin("POST", "partners", {"prefix": "twitter", "hook_url": hooks.url})
        fan = site.create_user("fan")
        auto = ("https://flattr.com/submit/auto?" +
                urlencode({"url": "https://t.example/1", "owner": "twitter:user:id:77"}))
        result = call(site, "POST", "/rest/v2/flattr", token=fan["token"], body={"url": auto})
        assert result.status == 200
        second = hooks.wait_for("pendingclickcreate", count=2)
        first = hooks.received("pendingclickcreate")[0]
        assert first.form == second.form and second.form["thing_owner_id"] == "twitter:user:id:77"
        assert [a["outcome"] for a in site.webhook_attempts(wait=2)] == ["HTTP 503", "HTTP 200"]


def test_view_escapes_hostile_definitions(site: FakeSite) -> None:
    hostile = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
    status, page = _view(site, url='https://h.example/?q="><script>alert(1)</script>',
                         uid="flattr",
                         title=hostile[:90], description=hostile)
    assert status == 200 and _attr(page, "data-state") == "loading"
    assert "<script>alert" not in page and "<img" not in page
    assert page.count("<script") == 1  # only the button's own script
    status, page = _view(site, url="https://h.example/", owner="facebook:" + hostile)
    assert _attr(page, "data-error") == "unsupported_owner"
    assert "<script>alert" not in page and page.count("<script") == 1


def test_connect_escapes_and_never_echoes_a_hostile_origin(site: FakeSite) -> None:
    origin = 'https://api.flattr.com"><script>alert(1)</script>'
    answer = call(site, "GET", "/button/connect?" + urlencode({"origin": origin}),
                  server="site")
    assert answer.status == 400 and b"<script>alert" not in answer.body


def test_cli_rejects_a_busy_http_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(AssertionError, match=f"cannot listen on 127.0.0.1:{port}"):
            FakeSite(seed=False, extra_args=("--api-http-port", str(port))).start()
