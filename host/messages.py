"""Request and reply shapes of the wire protocol (docs/protocol.md), and validation.

Requests arrive as plain dicts from the framing codec; :func:`parse_request` checks
the envelope and the fields of each type and returns a typed value, or raises
:class:`RequestError` whose message names the field and the rule. Nothing here does
I/O.
"""

from __future__ import annotations

import re

from flattr_host.errors import RequestError
from flattr_host.values import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_ID = 2**53 - 1  # a JavaScript safe integer: the extension picks ids
MAX_TOKEN_CHARS = 4096
MAX_URL_BYTES = 8192
MAX_URLS_PER_REQUEST = 1000
MAX_LABEL_CHARS = 128

# One regex scan instead of a Python loop per character: the check is on the hot
# path of every `flattr` request (docs/performance.md, durable enqueue). ``re`` is
# loaded anyway by ``json``.
_NOT_VISIBLE_ASCII = re.compile(r"[^\x21-\x7e]")
_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")
# A lower-case http(s) URL with a plain host name, optional port, no spaces or
# controls: valid by every rule of check_url, so urlsplit can be skipped for it.
_PLAIN_HTTP_URL = re.compile(
    r"https?://[A-Za-z0-9][A-Za-z0-9.-]*(?::[0-9]{1,5})?(?:[/?#][^\x00-\x20\x7f]*)?\Z"
)

INVALID_REQUEST = "invalid_request"
UNKNOWN_TYPE = "unknown_type"
TOO_LARGE = "too_large"
INTERNAL = "internal"


class Hello(Value):
    __slots__ = ("extension_id", "version", "build")
    extension_id: str
    version: str
    build: str


class GetState(Value):
    __slots__ = ()


class SetToken(Value):
    __slots__ = ("token", "subscription_active")
    token: str
    subscription_active: bool | None

    def __repr__(self) -> str:  # never let a token reach a log through repr()
        return (f"SetToken(token=<{len(self.token)} chars>, "
                f"subscription_active={self.subscription_active})")


class SetSubscription(Value):
    __slots__ = ("active",)
    active: bool


class SignOut(Value):
    __slots__ = ()


class FlattrUrls(Value):
    __slots__ = ("urls",)
    urls: tuple[str, ...]


class Flush(Value):
    __slots__ = ()


class Request(Value):
    __slots__ = ("id", "type", "body")
    id: int
    type: str
    body: Value


def read_id(message: dict[str, Any]) -> int | None:
    """The request id if it is valid, else None (used for error replies)."""
    value = message.get("id")
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID:
        return value
    return None


def parse_request(message: dict[str, Any]) -> Request:
    """Validate a decoded frame as a request of a known type."""
    request_id = read_id(message)
    if request_id is None:
        raise RequestError(
            INVALID_REQUEST, f"field 'id' must be an integer from 0 to {MAX_ID}", None
        )
    kind = message.get("type")
    if not isinstance(kind, str):
        raise RequestError(INVALID_REQUEST, "field 'type' must be a string", request_id)
    parser = _PARSERS.get(kind)
    if parser is None:
        shown = kind if len(kind) <= 64 else kind[:64] + "..."
        raise RequestError(UNKNOWN_TYPE, f"unknown request type {shown!r}", request_id)
    try:
        body = parser(message)
    except _FieldError as exc:
        raise RequestError(INVALID_REQUEST, str(exc), request_id) from None
    return Request(request_id, kind, body)


def ok(request_id: int, result: dict[str, Any]) -> dict[str, Any]:
    """A success reply."""
    return {"id": request_id, "ok": True, "result": result}


def error(request_id: int | None, code: str, message: str) -> dict[str, Any]:
    """An error reply; ``request_id`` is None when the request's id was unreadable."""
    return {"id": request_id, "ok": False, "error": {"code": code, "message": message}}


def state_event(state: dict[str, Any]) -> dict[str, Any]:
    """The event pushed whenever the state changes."""
    return {"event": "state", "state": state}


class _FieldError(Exception):
    """Internal: a field broke its rule; becomes an invalid_request reply."""


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _label(container: dict[str, Any], key: str, where: str) -> str:
    value = container.get(key)
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_LABEL_CHARS:
        raise _FieldError(
            f"field '{where}{key}' must be a string of 1 to {MAX_LABEL_CHARS} characters, "
            f"got {_type_name(value)}" + (f" of {len(value)}" if isinstance(value, str) else "")
        )
    return value


def _subscription(value: object, field: str) -> bool:
    if not isinstance(value, dict):
        raise _FieldError(f"field '{field}' must be an object, got {_type_name(value)}")
    active = value.get("active")
    if not isinstance(active, bool):
        raise _FieldError(f"field '{field}.active' must be a boolean, got {_type_name(active)}")
    return active


def _hello(message: dict[str, Any]) -> Hello:
    extension = message.get("extension")
    if not isinstance(extension, dict):
        raise _FieldError(f"field 'extension' must be an object, got {_type_name(extension)}")
    return Hello(
        _label(extension, "id", "extension."),
        _label(extension, "version", "extension."),
        _label(extension, "build", "extension."),
    )


def check_token(value: object) -> str:
    """Validate an access token: 1 to 4096 visible ASCII characters."""
    if not isinstance(value, str):
        raise _FieldError(f"field 'accessToken' must be a string, got {_type_name(value)}")
    if not 1 <= len(value) <= MAX_TOKEN_CHARS:
        raise _FieldError(
            f"field 'accessToken' of {len(value)} characters must have 1 to {MAX_TOKEN_CHARS}"
        )
    bad = _NOT_VISIBLE_ASCII.search(value)
    if bad is not None:
        raise _FieldError(
            f"field 'accessToken' must be visible ASCII; character {bad.start()} is not"
        )
    return value


def _set_token(message: dict[str, Any]) -> SetToken:
    token = check_token(message.get("accessToken"))
    subscription = message.get("subscription")
    active = None if subscription is None else _subscription(subscription, "subscription")
    return SetToken(token, active)


def _set_subscription(message: dict[str, Any]) -> SetSubscription:
    return SetSubscription(_subscription(message.get("subscription"), "subscription"))


def check_url(url: object, field: str) -> str:
    """Validate one URL to flattr: absolute http(s) with a host, at most 8 KiB."""
    if not isinstance(url, str):
        raise _FieldError(f"field '{field}' must be a string, got {_type_name(url)}")
    if len(url) > MAX_URL_BYTES // 4:  # else even 4 bytes per character fit the limit
        size = len(url.encode("utf-8", "surrogatepass"))
        if size > MAX_URL_BYTES:
            raise _FieldError(
                f"field '{field}' of {size} bytes exceeds limit of {MAX_URL_BYTES}"
            )
    if _PLAIN_HTTP_URL.match(url):
        return url  # the common shape, accepted without the general parser below
    from urllib.parse import urlsplit  # loaded on the first flattr, not at start-up

    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        raise _FieldError(f"field '{field}' is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise _FieldError(f"field '{field}' must be an http or https URL")
    if not host:
        raise _FieldError(f"field '{field}' must name a host")
    if _SPACE_OR_CONTROL.search(url):
        raise _FieldError(f"field '{field}' must not contain spaces or control characters")
    return url


def _flattr(message: dict[str, Any]) -> FlattrUrls:
    urls = message.get("urls")
    if not isinstance(urls, list):
        raise _FieldError(f"field 'urls' must be a list, got {_type_name(urls)}")
    if not 1 <= len(urls) <= MAX_URLS_PER_REQUEST:
        raise _FieldError(
            f"field 'urls' holds {len(urls)} items; it must hold 1 to {MAX_URLS_PER_REQUEST}"
        )
    return FlattrUrls(tuple(check_url(url, f"urls[{i}]") for i, url in enumerate(urls)))


# Types without fields share one immutable body.
_GET_STATE, _SIGN_OUT, _FLUSH = GetState(), SignOut(), Flush()

_PARSERS: dict[str, Any] = {
    "hello": _hello,
    "get-state": lambda _m: _GET_STATE,
    "set-token": _set_token,
    "set-subscription": _set_subscription,
    "sign-out": lambda _m: _SIGN_OUT,
    "flattr": _flattr,
    "flush": lambda _m: _FLUSH,
}

#: Every request type the host understands.
TYPES = tuple(_PARSERS)
