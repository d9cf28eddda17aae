"""Request validation: every type and every rule of docs/protocol.md."""

from __future__ import annotations

from typing import Any

import pytest

from flattr_host.core.errors import RequestError
from flattr_host.protocol import messages as m

HELLO = {"id": 1, "type": "hello", "extension": {"id": "abc", "version": "1.0", "build": "dev"}}


def invalid(message: dict[str, Any], code: str = m.INVALID_REQUEST) -> RequestError:
    with pytest.raises(RequestError) as info:
        m.parse_request(message)
    assert info.value.code == code
    return info.value


def test_hello_parses() -> None:
    request = m.parse_request(HELLO)
    assert request == m.Request(1, "hello", m.Hello("abc", "1.0", "dev"))


@pytest.mark.parametrize("bad_id", [None, -1, 1.5, "1", True, 2**53])
def test_bad_ids_are_refused_without_an_id(bad_id: object) -> None:
    error = invalid({"id": bad_id, "type": "get-state"})
    assert error.request_id is None
    assert "'id'" in error.message


def test_missing_type() -> None:
    error = invalid({"id": 4})
    assert error.request_id == 4
    assert "'type'" in error.message


def test_unknown_type_keeps_the_id() -> None:
    error = invalid({"id": 9, "type": "launch-missiles"}, m.UNKNOWN_TYPE)
    assert error.request_id == 9
    assert "launch-missiles" in error.message


@pytest.mark.parametrize(
    ("extension", "field"),
    [
        (None, "'extension'"),
        ({"id": "a", "version": "1"}, "'extension.build'"),
        ({"id": "", "version": "1", "build": "b"}, "'extension.id'"),
        ({"id": "a" * 129, "version": "1", "build": "b"}, "of 129"),
        ({"id": 5, "version": "1", "build": "b"}, "got int"),
    ],
)
def test_hello_fields(extension: object, field: str) -> None:
    assert field in invalid({"id": 1, "type": "hello", "extension": extension}).message


def test_set_token_with_and_without_subscription() -> None:
    body = m.parse_request({"id": 2, "type": "set-token", "accessToken": "tok-123"}).body
    assert body == m.SetToken("tok-123", None)
    body = m.parse_request({"id": 2, "type": "set-token", "accessToken": "tok",
                            "subscription": {"active": False}}).body
    assert body == m.SetToken("tok", False)


def test_set_token_repr_hides_the_token() -> None:
    assert "s3cr3t" not in repr(m.SetToken("s3cr3t-token", True))


@pytest.mark.parametrize(
    ("token", "text"),
    [
        ("", "must not be empty"),
        ("x" * 4097, "4097 characters"),
        ("has space", "character 3"),
        ("tab\there", "visible ASCII"),
        ("ünicode", "visible ASCII"),
        (12345, "got int"),
        (None, "got null"),
    ],
)
def test_token_rules(token: object, text: str) -> None:
    error = invalid({"id": 3, "type": "set-token", "accessToken": token})
    assert text in error.message


def test_token_at_the_limit_is_accepted() -> None:
    m.parse_request({"id": 3, "type": "set-token", "accessToken": "~" * 4096})


@pytest.mark.parametrize("sub", [None, {"active": "yes"}, {}, [True], {"active": 1}])
def test_subscription_rules(sub: object) -> None:
    error = invalid({"id": 5, "type": "set-subscription", "subscription": sub})
    assert "subscription" in error.message


def test_flattr_urls() -> None:
    body = m.parse_request({"id": 6, "type": "flattr",
                            "urls": ["https://a.example/x", "http://b.example/?q=1#f"]}).body
    assert body == m.FlattrUrls(("https://a.example/x", "http://b.example/?q=1#f"))


@pytest.mark.parametrize(
    ("urls", "text"),
    [
        ("https://a.example", "must be a list, got str"),
        ([], "holds 0 items"),
        (["https://a.example"] * 1001, "holds 1001 items"),
        ([5], "'urls[0]' must be a string"),
        (["ftp://a.example/x"], "http or https"),
        (["javascript:alert(1)"], "http or https"),
        (["https:///path"], "must name a host"),
        (["https://a.example/" + "x" * 8200], "8218 bytes, limit 8192"),
        (["https://a.example/a b"], "spaces, control characters"),
        (["https://ok.example", "https://[::1"], "'urls[1]'"),
    ],
)
def test_flattr_rules(urls: object, text: str) -> None:
    assert text in invalid({"id": 7, "type": "flattr", "urls": urls}).message


def test_url_at_the_limit_is_accepted() -> None:
    url = "https://a.example/" + "x" * (8192 - len("https://a.example/"))
    m.parse_request({"id": 7, "type": "flattr", "urls": [url]})


def test_types_without_fields_ignore_extras() -> None:
    for kind in ("get-state", "sign-out", "flush", "retry-failed"):
        assert m.parse_request({"id": 1, "type": kind, "extra": [1]}).type == kind


def test_reply_shapes() -> None:
    assert m.ok(3, {"a": 1}) == {"id": 3, "ok": True, "result": {"a": 1}}
    assert m.error(None, "internal", "x") == {
        "id": None, "ok": False, "error": {"code": "internal", "message": "x"}}
    assert m.state_event({"s": 1}) == {"event": "state", "state": {"s": 1}}
