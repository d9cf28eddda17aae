"""Conformance of the fake API v2 with every example of flattr-docs 002-004.

Each test requests what an example shows and checks the status, the headers
(exact ``Content-Type``, the four ``X-RateLimit-*``), the JSON field names in
the documented order, value types and, for the seeded example data, values.
The documented field orders are written out below; tests check those lists, the
field types and the error codes against the documents' own examples, kept in the
repository as test data (tests/data/flattr-docs/, with a note on their source).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from flattr_testing.fake_site import FakeSite
from tests.unit.fake_site.client import Answer, call

JSON_TYPE = "application/json;charset=utf-8"
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Current",
                "X-RateLimit-Reset")
DOCS = Path(__file__).resolve().parents[2] / "data" / "flattr-docs"
EXAMPLES = DOCS / "examples.json"
FIELDS = DOCS / "fields.json"
ERRORS = DOCS / "errors.json"

MINI_USER = ["type", "resource", "link", "username"]
USER = [*MINI_USER, "firstname", "lastname", "avatar", "about", "city", "country", "url"]
USER_EXTENDED = [*USER, "email", "registered_at"]
THING_PUBLIC = ["type", "resource", "link", "id", "url", "language", "category", "owner",
                "hidden", "image", "created_at", "tags", "flattrs", "description", "title"]
THING = [*THING_PUBLIC, "flattred", "subscribed"]
THING_FULL = [*THING_PUBLIC, "last_flattr_at", "updated_at", "flattred", "subscribed"]
FLATTR = ["type", "thing", "owner", "created_at"]
FLATTR_THING = ["type", "resource", "link", "id", "url", "title", "image", "flattrs", "owner"]
FLATTR_CREATE = ["message", "description", "thing"]
MINI_THING_CREATE = ["type", "resource", "link", "id", "flattrs", "url", "title", "image"]
SEARCH = ["total_items", "items", "page", "things"]
ACTIVITY = ["published", "title", "actor", "verb", "object", "id"]
RATE_LIMIT = ["hourly_limit", "remaining_hits", "current_hits", "reset_time_in_seconds",
              "reset_time"]
ERROR = ["error", "error_description", "error_uri"]
BLOG_URL = "http://blog.flattr.net/2011/10/api-v2-beta-out-whats-changed/"
AUTO_SUBMIT = ("http://flattr.com/submit/auto?url=http%3A%2F%2Fblog.flattr.net%2F2011%2F10%2F"
               "api-v2-beta-out-whats-changed%2F&user_id=flattr")


def documented(answer: Answer, status: int, *, rate_limited: bool = True,
               content_type: str = JSON_TYPE) -> Any:
    """Check status and headers as in the docs' header blocks; return the JSON body."""
    assert answer.status == status, answer.body
    assert answer.header("Content-Type") == content_type
    for name in RATE_HEADERS:
        value = answer.header(name)
        if rate_limited:
            assert value is not None and value.isdigit(), name
        else:
            assert value is None, name
    return answer.json() if answer.body else None


def error_of(answer: Answer, status: int, code: str) -> dict[str, Any]:
    body: dict[str, Any] = documented(answer, status)
    assert list(body) == ERROR
    assert body["error"] == code
    assert body["error_uri"] == "https://developers.flattr.net/api"
    return body


def _token(site: FakeSite, username: str) -> str:
    # Seeded users have no token; a fresh admin user stands in for alice's role.
    return str(site.create_user(f"{username}-t", active=True)["token"])


def test_field_orders_match_the_examples_file() -> None:
    ex = json.loads(EXAMPLES.read_text())
    assert list(ex["THING_PUBLIC"]) == THING_PUBLIC
    assert list(ex["THING"]) == THING
    assert list(ex["THING_FULL"]) == THING_FULL
    assert list(ex["FLATTR"]) == FLATTR
    assert list(ex["FLATTR"]["thing"]) == FLATTR_THING
    assert list(ex["FLATTR_CREATE"]) == FLATTR_CREATE
    assert list(ex["FLATTR_CREATE"]["thing"]) == MINI_THING_CREATE
    assert list(ex["USER"]) == USER
    assert list(ex["USER_EXTENDED"]) == USER_EXTENDED
    assert list(ex["SEARCH"]) == SEARCH
    assert list(ex["ACTIVITIES"]["items"][0]) == ACTIVITY
    assert list(ex["THING_PUBLIC"]["owner"]) == MINI_USER
    assert [c["id"] for c in ex["CATEGORIES"]] == [
        "text", "images", "video", "audio", "software", "people", "rest"]


# Value types of the field tables (fields.json) as Python types.
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "int": (int,), "bool": (bool,), "array": (list,), "hash": (dict,)}


def _check_types(obj: dict[str, Any], table: str) -> None:
    fields = json.loads(FIELDS.read_text())[table]
    for name, value in obj.items():
        if name not in fields or value is None:
            continue
        kinds = tuple(t for kind in fields[name]["type"] for t in FIELD_TYPES[kind])
        if int in kinds and bool not in kinds:
            assert not isinstance(value, bool), (table, name, value)
        assert isinstance(value, kinds), (table, name, value)


def test_values_have_the_documented_types(site: FakeSite) -> None:
    thing = call(site, "GET", "/rest/v2/things/423405").json()
    _check_types(thing, "FIELDS_THING")
    _check_types(thing["owner"], "FIELDS_MINI_USER")
    _check_types(call(site, "GET", "/rest/v2/users/flattr").json(), "FIELDS_USER")
    token = _token(site, "typed")
    me = call(site, "GET", "/rest/v2/user", token=token).json()
    _check_types(me, "FIELDS_USER")
    flattr = call(site, "GET", "/rest/v2/users/qzio/flattrs").json()[0]
    _check_types(flattr["owner"], "FIELDS_MINI_USER")


def test_examples_file_agrees_with_its_own_field_tables() -> None:
    """The test data is the documents' (a corrupted copy would fail here)."""
    ex = json.loads(EXAMPLES.read_text())
    _check_types(ex["THING_PUBLIC"], "FIELDS_THING")
    _check_types(ex["USER"], "FIELDS_USER")
    assert set(ex["THING_PUBLIC"]) <= set(json.loads(FIELDS.read_text())["FIELDS_THING"])


def test_every_documented_error_code_is_answered_with_its_status(site: FakeSite) -> None:
    documented_codes = json.loads(ERRORS.read_text())
    token = _token(site, "codes")
    reader = site.create_user("codes-reader", scopes=["email"])["token"]
    poor = site.create_user("codes-poor", active=False)["token"]
    own_id = call(site, "POST", "/rest/v2/things", token=token,
                  body={"url": "https://codes.example/"}).json()["id"]
    call(site, "POST", "/rest/v2/things/423405/flattr", token=token)
    requests: dict[str, tuple[str, str, dict[str, Any]]] = {
        "invalid_request": ("POST", "/rest/v2/flattr", {"token": token, "body": {}}),
        "invalid_parameters": ("GET", "/rest/v2/things/search?count=abc", {}),
        "unauthorized": ("GET", "/rest/v2/user", {}),
        "insufficient_scope": ("POST", "/rest/v2/flattr",
                               {"token": reader, "body": {"url": BLOG_URL}}),
        "not_found": ("GET", "/rest/v2/things/nothing_here", {}),
        "not_acceptable": ("GET", "/rest/v2/categories.xml", {}),
        "flattr_once": ("POST", "/rest/v2/things/423405/flattr", {"token": token}),
        "flattr_owner": ("POST", f"/rest/v2/things/{own_id}/flattr", {"token": token}),
        "no_means": ("POST", "/rest/v2/things/423405/flattr", {"token": poor}),
    }
    untested = {"rate_limit_exceeded", "invalid_scope"}  # rate limit: its own test; scopes
    # are chosen at /oauth/authorize, which test_oauth covers.
    for entry in documented_codes["errors"] + documented_codes["flattr_errors"]:
        if entry["error"] in untested:
            continue
        method, path, kwargs = requests[entry["error"]]
        answer = call(site, method, path, **kwargs)
        assert answer.status == entry["status"], (entry, answer.body)
        assert answer.json()["error"] == entry["error"]


def test_error_body_is_the_documented_example(site: FakeSite) -> None:
    example = json.loads(ERRORS.read_text())["error_example"]
    answer = call(site, "GET", "/rest/v2/things/nothing_here")
    assert answer.status == example["status"]
    assert answer.header("Content-Type") == example["headers"]["Content-Type"]
    assert answer.json() == example["body"]
    assert list(answer.json()) == list(example["body"]) == ERROR


def test_rate_limit_names_are_the_documented_ones() -> None:
    facts = json.loads(ERRORS.read_text())
    assert list(RATE_HEADERS) == facts["rate_limit_headers"]
    assert RATE_LIMIT == facts["rate_limit_example"]


# -- document 002 ----------------------------------------------------------------

def test_error_example_not_found(site: FakeSite) -> None:
    body = error_of(call(site, "GET", "/rest/v2/things/nothing_here"), 404, "not_found")
    assert body["error_description"] == "The resource was not found"


def test_rate_limit_example(site: FakeSite) -> None:
    call(site, "GET", "/rest/v2/categories")
    body = documented(call(site, "GET", "/rest/v2/rate_limit"), 200, rate_limited=False)
    assert list(body) == RATE_LIMIT
    assert body["hourly_limit"] == 1000
    assert body["current_hits"] == 1 and body["remaining_hits"] == 999
    assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d \+0000 GMT", body["reset_time"])
    again = call(site, "GET", "/rest/v2/rate_limit").json()
    assert again["current_hits"] == 1  # /rate_limit itself is not counted


def test_rate_limit_headers_count_and_reset_is_an_hour_away(site: FakeSite) -> None:
    first = call(site, "GET", "/rest/v2/categories")
    second = call(site, "GET", "/rest/v2/categories")
    assert first.header("X-RateLimit-Current") == "1"
    assert second.header("X-RateLimit-Current") == "2"
    assert second.header("X-RateLimit-Remaining") == "998"
    assert first.header("X-RateLimit-Reset") == second.header("X-RateLimit-Reset")


def test_rate_limit_exceeded_and_window_resets(site: FakeSite) -> None:
    site.configure(rate_limit=2)
    for _ in range(2):
        assert call(site, "GET", "/rest/v2/categories").status == 200
    refused = call(site, "GET", "/rest/v2/categories")
    body = error_of(refused, 403, "rate_limit_exceeded")
    assert body["error_description"]
    assert refused.header("X-RateLimit-Remaining") == "0"
    site.admin("POST", "clock", {"advance": 3601})
    assert call(site, "GET", "/rest/v2/categories").status == 200


def test_client_error_codes(site: FakeSite) -> None:
    token = _token(site, "errors")
    error_of(call(site, "GET", "/rest/v2/things/search?count=abc"), 400, "invalid_parameters")
    error_of(call(site, "POST", "/rest/v2/flattr", token=token, body={}), 400, "invalid_request")
    error_of(call(site, "GET", "/rest/v2/user"), 401, "unauthorized")
    error_of(call(site, "GET", "/rest/v2/user", token="0" * 40), 401, "unauthorized")
    reader = site.create_user("reader", scopes=["email"])["token"]
    error_of(call(site, "POST", "/rest/v2/flattr", token=reader, body={"url": BLOG_URL}),
             403, "insufficient_scope")
    answer = call(site, "GET", "/rest/v2/categories", headers={"Accept": "text/xml"})
    assert answer.status == 406 and answer.json()["error"] == "not_acceptable"


def test_formats_suffix_accept_jsonp_and_cors(site: FakeSite) -> None:
    plain = call(site, "GET", "/rest/v2/categories").json()
    assert call(site, "GET", "/rest/v2/categories.json").json() == plain
    assert call(site, "GET", "/rest/v2/categories",
                headers={"Accept": "application/json"}).json() == plain
    assert call(site, "GET", "/rest/v2/categories.xml").status == 406
    jsonp = call(site, "GET", "/rest/v2/categories?jsonp=cb")
    assert jsonp.body.startswith(b"cb(") and jsonp.body.endswith(b");")
    assert json.loads(jsonp.body[3:-2]) == plain
    assert call(site, "GET", "/rest/v2/categories?callback=x.y").body.startswith(b"x.y(")
    assert call(site, "GET", "/rest/v2/categories?jsonp=alert(1)").status == 400
    assert call(site, "GET", "/rest/v2/categories").header(
        "Access-Control-Allow-Origin") == "*"
    pre = call(site, "OPTIONS", "/rest/v2/flattr/bulk", headers={
        "Origin": "https://flattr.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert pre.status == 204
    assert "POST" in (pre.header("Access-Control-Allow-Methods") or "")
    assert "authorization" in (pre.header("Access-Control-Allow-Headers") or "").lower()


def test_post_accepts_form_encoded_bodies(site: FakeSite) -> None:
    token = _token(site, "former")
    answer = call(site, "POST", "/rest/v2/flattr", token=token, form={"url": AUTO_SUBMIT})
    assert documented(answer, 200)["message"] == "ok"


# -- document 003: flattrs --------------------------------------------------------

def test_users_flattrs_example(site: FakeSite) -> None:
    body = documented(call(site, "GET", "/rest/v2/users/qzio/flattrs"), 200)
    assert isinstance(body, list) and body
    gnu = next(f for f in body if f["thing"]["id"] == 313733)
    assert list(gnu) == FLATTR and list(gnu["thing"]) == FLATTR_THING
    assert list(gnu["owner"]) == MINI_USER and list(gnu["thing"]["owner"]) == MINI_USER
    assert gnu["thing"]["url"] == "https://flattr.com/profile/gnuproject"
    assert gnu["thing"]["title"] == "GNU's not Unix!"
    assert gnu["owner"]["username"] == "qzio" and gnu["created_at"] == 1316697578
    error_of(call(site, "GET", "/rest/v2/users/nobody-here/flattrs"), 404, "not_found")


def test_users_flattrs_empty_list_and_paging(site: FakeSite) -> None:
    assert documented(call(site, "GET", "/rest/v2/users/bob/flattrs"), 200) == []
    page1 = call(site, "GET", "/rest/v2/users/qzio/flattrs?count=1&page=1").json()
    page2 = call(site, "GET", "/rest/v2/users/qzio/flattrs?count=1&page=2").json()
    assert len(page1) == 1 and len(page2) == 1 and page1 != page2
    assert call(site, "GET", "/rest/v2/users/qzio/flattrs?count=1&page=3").json() == []


def test_authenticated_user_flattrs_example(site: FakeSite) -> None:
    error_of(call(site, "GET", "/rest/v2/user/flattrs"), 401, "unauthorized")
    token = _token(site, "fl")
    call(site, "POST", "/rest/v2/things/313733/flattr", token=token)
    body = documented(call(site, "GET", "/rest/v2/user/flattrs", token=token), 200)
    assert [f["thing"]["id"] for f in body] == [313733]
    assert list(body[0]) == FLATTR


def test_thing_flattrs_example(site: FakeSite) -> None:
    error_of(call(site, "GET", "/rest/v2/things/313733/flattrs"), 401, "unauthorized")
    token = _token(site, "tf")
    body = documented(call(site, "GET", "/rest/v2/things/313733/flattrs", token=token), 200)
    assert [f["owner"]["username"] for f in body] == ["qzio"]
    full = call(site, "GET", "/rest/v2/things/313733/flattrs?full=1", token=token).json()
    assert list(full[0]["thing"]) == THING_PUBLIC and list(full[0]["owner"]) == USER


def test_flattr_a_thing_example_and_errors(site: FakeSite) -> None:
    token = _token(site, "ft")
    answer = call(site, "POST", "/rest/v2/things/423405/flattr", token=token)
    body = documented(answer, 200)
    assert list(body) == FLATTR_CREATE and list(body["thing"]) == MINI_THING_CREATE
    assert body["message"] == "ok" and body["description"] == "Thing was successfully flattred"
    assert body["thing"]["id"] == 423405 and body["thing"]["flattrs"] == 4
    error_of(call(site, "POST", "/rest/v2/things/423405/flattr", token=token),
             403, "flattr_once")
    error_of(call(site, "POST", "/rest/v2/things/999999/flattr", token=token), 404, "not_found")
    poor = site.create_user("poor", active=False)["token"]
    error_of(call(site, "POST", "/rest/v2/things/423405/flattr", token=poor), 401, "no_means")
    own = call(site, "POST", "/rest/v2/things", token=token, body={"url": "https://own.example/"})
    own_id = own.json()["id"]
    error_of(call(site, "POST", f"/rest/v2/things/{own_id}/flattr", token=token),
             403, "flattr_owner")


def test_flattr_a_url_example_auto_submit_creates_thing(site: FakeSite) -> None:
    token = _token(site, "fu")
    new_auto = ("http://flattr.com/submit/auto?url=" + quote("https://new.example/post", safe="")
                + "&user_id=flattr&title=New%20post&tags=a,b&category=text")
    body = documented(call(site, "POST", "/rest/v2/flattr", token=token,
                           body={"url": new_auto}), 200)
    assert list(body) == FLATTR_CREATE and list(body["thing"]) == MINI_THING_CREATE
    assert body["thing"]["url"] == "https://new.example/post"
    assert body["thing"]["title"] == "New post" and body["thing"]["flattrs"] == 1
    thing = call(site, "GET", f"/rest/v2/things/{body['thing']['id']}").json()
    assert thing["owner"]["username"] == "flattr" and thing["tags"] == ["a", "b"]
    # The documented example URL names an existing thing.
    doc = documented(call(site, "POST", "/rest/v2/flattr", token=token,
                          body={"url": AUTO_SUBMIT}), 200)
    assert doc["thing"]["id"] == 423405
    error_of(call(site, "POST", "/rest/v2/flattr", token=token, body={"url": AUTO_SUBMIT}),
             403, "flattr_once")
    error_of(call(site, "POST", "/rest/v2/flattr", token=token,
                  body={"url": "https://unknown.example/"}), 404, "not_found")
    error_of(call(site, "POST", "/rest/v2/flattr", token=token, body={"url": "ftp://x"}),
             400, "invalid_request")


# -- document 004: users, things, activities, categories, languages ------------------

def test_get_user_and_authenticated_user(site: FakeSite) -> None:
    body = documented(call(site, "GET", "/rest/v2/users/flattr"), 200)
    assert list(body) == USER
    assert body["firstname"] == "Flattr.com" and body["url"] == "http://flattr.com"
    assert body["link"] == "https://flattr.com/profile/flattr"
    error_of(call(site, "GET", "/rest/v2/users/nobody-here"), 404, "not_found")
    token = _token(site, "me")
    me = documented(call(site, "GET", "/rest/v2/user", token=token), 200)
    assert list(me) == USER_EXTENDED and me["username"] == "me-t"
    basic = site.create_user("basic", scopes=["flattr"])["token"]
    assert list(call(site, "GET", "/rest/v2/user.json", token=basic).json()) == USER


def test_user_things_and_own_things(site: FakeSite) -> None:
    body = documented(call(site, "GET", "/rest/v2/users/flattr/things"), 200)
    assert [t["id"] for t in body] == [423405] and list(body[0]) == THING_PUBLIC
    token = _token(site, "owner")
    created = call(site, "POST", "/rest/v2/things", token=token,
                   body={"url": "https://mine.example/", "title": "Mine"})
    assert documented(created, 201)["message"] == "ok"
    assert list(created.json()) == ["id", "link", "message", "description"]
    mine = documented(call(site, "GET", "/rest/v2/user/things", token=token), 200)
    assert [t["title"] for t in mine] == ["Mine"] and list(mine[0]) == THING_FULL
    error_of(call(site, "GET", "/rest/v2/user/things"), 401, "unauthorized")


def test_get_thing_public_token_and_owner_views(site: FakeSite) -> None:
    public = documented(call(site, "GET", "/rest/v2/things/423405"), 200)
    assert list(public) == THING_PUBLIC
    assert public["title"] == "API v2 beta out - what's changed?" and public["tags"] == ["api"]
    assert public["created_at"] == 1319704532 and public["hidden"] is False
    token = _token(site, "viewer")
    assert list(call(site, "GET", "/rest/v2/things/423405", token=token).json()) == THING
    owner = _token(site, "own2")
    tid = call(site, "POST", "/rest/v2/things", token=owner,
               body={"url": "https://own2.example/"}).json()["id"]
    assert list(call(site, "GET", f"/rest/v2/things/{tid}", token=owner).json()) == THING_FULL


def test_get_multiple_things(site: FakeSite) -> None:
    body = documented(call(site, "GET", "/rest/v2/things/423405,450287"), 200)
    assert [t["id"] for t in body] == [423405, 450287]
    assert all(list(t) == THING_PUBLIC for t in body)
    assert call(site, "GET", "/rest/v2/things?id=423405,450287").json() == body
    error_of(call(site, "GET", "/rest/v2/things/1,2"), 404, "not_found")


def test_lookup_found_not_found_and_auto_submit(site: FakeSite) -> None:
    found = call(site, "GET", "/rest/v2/things/lookup/?url=" + quote(BLOG_URL, safe=""))
    body = documented(found, 302)
    assert body == {"message": "found",
                    "location": "https://api.flattr.com/rest/v2/things/423405"}
    assert found.header("Location") == body["location"]
    missing = documented(call(site, "GET", "/rest/v2/things/lookup?url=https%3A%2F%2Fno.example"),
                         404)
    assert missing == {"message": "not_found", "description": "No thing was found"}
    auto = call(site, "GET", "/rest/v2/things/lookup/?url=" + quote(AUTO_SUBMIT, safe=""))
    assert auto.status == 302 and auto.header("Location") == body["location"]
    mismatch = AUTO_SUBMIT.replace("user_id=flattr", "user_id=qzio")
    error_of(call(site, "GET", "/rest/v2/things/lookup?url=" + quote(mismatch, safe="")),
             400, "validation")


def test_search_filters_tags_sort_and_paging(site: FakeSite) -> None:
    body = documented(call(site, "GET",
                           "/rest/v2/things/search?query=flattr&category=software&tags=ruby"), 200)
    assert list(body) == SEARCH
    assert body["total_items"] == 1 and body["items"] == 1 and body["page"] == 1
    assert body["things"][0]["id"] == 450287 and list(body["things"][0]) == THING_PUBLIC

    def ids(query: str) -> list[int]:
        return sorted(t["id"] for t in call(site, "GET",
                                            "/rest/v2/things/search?" + query).json()["things"])

    assert ids("tags=" + quote("gnu | ruby ! api")) == [313733]
    assert ids("tags=" + quote("opensource & audio")) == [459394]
    assert ids("tags=" + quote("opensource ! audio")) == [450287]
    assert ids("user=smgt") == [450287]
    assert ids("language=en_GB,sv_SE&category=text") == [423405]
    assert ids("url=" + quote(BLOG_URL, safe="")) == [423405]
    top = call(site, "GET", "/rest/v2/things/search?sort=flattrs&count=1").json()
    assert top["things"][0]["id"] == 423405 and top["total_items"] == 4 and top["items"] == 1
    page2 = call(site, "GET", "/rest/v2/things/search?sort=flattrs&count=3&page=2").json()
    assert page2["page"] == 2 and page2["items"] == 1
    error_of(call(site, "GET", "/rest/v2/things/search?sort=nope"), 400, "invalid_parameters")


def test_activities(site: FakeSite) -> None:
    stream = "application/stream+json"
    body = documented(call(site, "GET", "/rest/v2/users/pthulin/activities"), 200,
                      content_type=stream)
    item = next(i for i in body["items"] if "Acoustid" in i["title"])
    assert list(item) == ACTIVITY and item["verb"] == "like"
    assert item["title"] == 'pthulin flattred "Acoustid"'
    assert item["actor"] == {"displayName": "pthulin",
                             "url": "https://flattr.com/profile/pthulin", "objectType": "person"}
    assert item["object"]["url"] == "https://flattr.com/thing/459394/Acoustid"
    assert item["id"] == "tag:flattr.com,2012-01-04:pthulin/flattr/459394"
    assert item["published"] == "2012-01-04T09:07:12+00:00"
    incoming = call(site, "GET", "/rest/v2/users/acoustid/activities?type=incoming").json()
    assert [i["id"] for i in incoming["items"]] == [item["id"]]
    assert call(site, "GET", "/rest/v2/users/pthulin/activities.as").status == 200
    error_of(call(site, "GET", "/rest/v2/user/activities"), 401, "unauthorized")
    token = _token(site, "act")
    mine = documented(call(site, "GET", "/rest/v2/user/activities", token=token), 200,
                      content_type=stream)
    assert mine == {"items": []}


def test_categories_and_languages(site: FakeSite) -> None:
    cats = documented(call(site, "GET", "/rest/v2/categories"), 200)
    assert [c["id"] for c in cats] == ["text", "images", "video", "audio", "software",
                                       "people", "rest"]
    assert cats[-1] == {"id": "rest", "text": "Other"}
    langs = documented(call(site, "GET", "/rest/v2/languages"), 200)
    assert langs[:4] == [{"id": "en_GB", "text": "English"}, {"id": "sq_AL", "text": "Albanian"},
                         {"id": "ar_DZ", "text": "Arabic"},
                         {"id": "be_BY", "text": "Belarusian"}]
    assert all(list(entry) == ["id", "text"] for entry in langs)


def test_update_and_delete_thing(site: FakeSite) -> None:
    token = _token(site, "upd")
    tid = call(site, "POST", "/rest/v2/things", token=token,
               body={"url": "https://upd.example/"}).json()["id"]
    patched = call(site, "PATCH", f"/rest/v2/things/{tid}", token=token,
                   body={"title": "API v2 documentation"})
    assert documented(patched, 200) == {"message": "ok",
                                        "description": "Thing was updated correctly"}
    via_post = call(site, "POST", f"/rest/v2/things/{tid}", token=token,
                    form={"_method": "patch", "tags": "x,y"})
    assert via_post.status == 200
    thing = call(site, "GET", f"/rest/v2/things/{tid}").json()
    assert thing["title"] == "API v2 documentation" and thing["tags"] == ["x", "y"]
    other = _token(site, "other")
    error_of(call(site, "DELETE", f"/rest/v2/things/{tid}", token=other), 403, "forbidden")
    gone = call(site, "DELETE", f"/rest/v2/things/{tid}", token=token)
    assert documented(gone, 204) is None
    error_of(call(site, "GET", f"/rest/v2/things/{tid}"), 404, "not_found")
    error_of(call(site, "POST", "/rest/v2/things", token=token, body={"url": "nope"}),
             400, "validation")
