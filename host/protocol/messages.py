"""Request and reply shapes of the wire protocol (docs/protocol.md), and validation.

Requests arrive as plain dicts from the framing codec; :func:`parse_request` checks
the envelope and the fields of each type and returns a typed value, or raises
:class:`RequestError` whose message names the field and the rule. Nothing here does
I/O.
"""

from __future__ import annotations

import re

from flattr_host.core.errors import RequestError
from flattr_host.core.values import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

MAX_ID = 2**53 - 1  # a JavaScript safe integer: the extension picks ids
MAX_TOKEN_CHARS = 4096
MAX_URL_BYTES = 8192
MAX_URLS_PER_REQUEST = 1000
MAX_LABEL_CHARS = 128
#: Objects and lists nested in a request, the request itself included. The deepest
#: request type (attention-signals) needs 3; anything far deeper is refused before
#: any code walks it recursively.
MAX_NESTING = 16

# The page protocol's input rules (docs/protocol.md, "Field rules"). The extension's
# lib/validate.js applies the same rules; tests/data/protocol_cases.json holds the
# cases both must agree on, and the limits above. The URL rule is in .urls. Each rule
# is one scan in C (a str method or a regex), never a Python loop per character:
# these run on every request (docs/performance.md, durable enqueue); a regex costs
# its compile time at start-up, so only this one is compiled here.
# A lone surrogate can only come from a JSON escape (the payload itself is UTF-8),
# so a payload without one of these escapes needs no walk for them.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")

INVALID_REQUEST = "invalid_request"
UNKNOWN_TYPE = "unknown_type"
TOO_LARGE = "too_large"
INTERNAL = "internal"
BUSY = "busy"


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


class RetryFailed(Value):
    __slots__ = ()


# -- attention (docs/protocol.md#attention) ---------------------------------
# Light values only: the engine (dataclasses) is imported by the service on the first
# attention request, never on the hello path.


class FlattrManual(Value):
    """``flattr`` with ``manual: true``: the user's "Flattr this page" (one URL)."""

    __slots__ = ("url",)
    url: str


class AttentionSignal(Value):
    """One relayed browser signal; fields a kind does not have are None."""

    __slots__ = ("kind", "tab_id", "window_id", "url", "incognito", "audible", "muted", "state")
    kind: str
    tab_id: int | None
    window_id: int | None
    url: str | None
    incognito: bool | None
    audible: bool | None
    muted: bool | None
    state: str | None


class AttentionSignals(Value):
    __slots__ = ("signals",)
    signals: tuple[AttentionSignal, ...]


class AttentionPage(Value):
    __slots__ = ("url",)
    url: str


class AttentionSettings(Value):
    __slots__ = ()


class AttentionSite(Value):
    __slots__ = ("site", "enabled")
    site: str
    enabled: bool


class AttentionCountAll(Value):
    __slots__ = ("enabled",)
    enabled: bool


# -- end of attention values ----------------------------------------------------------


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


def parse_request(message: dict[str, Any], payload: bytes | None = None) -> Request:
    """Validate a decoded frame as a request of a known type.

    Every string (field names included) must be encodable as UTF-8, and nothing
    may nest deeper than :data:`MAX_NESTING`, in known and unknown fields alike: a
    reply or a log line echoing such a value could not be written. ``payload``,
    the frame the message was decoded from, lets both checks be skipped when its
    bytes show they cannot fail.
    """
    request_id = read_id(message)
    if request_id is None:
        raise RequestError(
            INVALID_REQUEST, f"field 'id' must be an integer from 0 to {MAX_ID}", None
        )
    if payload is None or _may_break_rules(payload):
        try:
            check_tree(message)
        except FieldError as exc:
            raise RequestError(INVALID_REQUEST, str(exc), request_id) from None
    kind = message.get("type")
    if not isinstance(kind, str):
        raise RequestError(INVALID_REQUEST, "field 'type' must be a string", request_id)
    parser = _PARSERS.get(kind)
    if parser is None:
        shown = kind if len(kind) <= 64 else kind[:64] + "..."
        raise RequestError(UNKNOWN_TYPE, f"unknown request type {shown!r}", request_id,
                           reason="unknown request type")
    try:
        body = parser(message)
    except FieldError as exc:
        raise RequestError(INVALID_REQUEST, str(exc), request_id, reason=exc.reason) from None
    return Request(request_id, kind, body)


def _may_break_rules(payload: bytes) -> bool:
    """False when ``payload`` can hold neither a lone surrogate nor deep nesting."""
    if payload.count(b"{") + payload.count(b"[") > MAX_NESTING:
        return True
    return _SURROGATE_ESCAPE.search(payload) is not None


def _path_text(path: list[str | int]) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            shown = part if len(part) <= 64 else part[:64] + "..."
            shown = shown.encode("utf-8", "backslashreplace").decode("utf-8")
            text += ("." if text else "") + shown
    return text


def lone_surrogate_at(text: str) -> int | None:
    """Where the first lone surrogate of ``text`` is (a str holds a pair as one code
    point), or None: UTF-8 encodes every code point but those."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def _surrogate_problem(text: str) -> str | None:
    at = lone_surrogate_at(text)
    if at is None:
        return None
    return f"is not valid Unicode: lone surrogate U+{ord(text[at]):04X} at character {at}"


def check_tree(message: dict[str, Any]) -> None:
    """Refuse a lone surrogate in any string or key, and nesting over the limit.

    Iterative, with one iterator per open container: a frame nested as deep as the
    JSON parser allows costs a loop, never the interpreter's stack, and a list of
    350,000 items costs no memory beyond the frame itself.
    """
    path: list[str | int] = []
    stack: list[Iterator[tuple[Any, Any]]] = [iter(message.items())]
    while stack:
        try:
            key, child = next(stack[-1])
        except StopIteration:
            stack.pop()
            if stack:
                path.pop()
            continue
        if isinstance(key, str):
            problem = _surrogate_problem(key)
            if problem is not None:
                raise FieldError(f"field name '{_path_text([*path, key])}' {problem}")
        if isinstance(child, str):
            problem = _surrogate_problem(child)
            if problem is not None:
                raise FieldError(f"field '{_path_text([*path, key])}' {problem}")
        elif isinstance(child, dict | list):
            if len(stack) + 1 > MAX_NESTING:
                raise FieldError(
                    f"field '{_path_text([*path, key])}' nests deeper than the limit of "
                    f"{MAX_NESTING} levels of objects and lists"
                )
            path.append(key)
            stack.append(iter(child.items()) if isinstance(child, dict) else enumerate(child))


def ok(request_id: int, result: dict[str, Any]) -> dict[str, Any]:
    """A success reply."""
    return {"id": request_id, "ok": True, "result": result}


def error(request_id: int | None, code: str, message: str) -> dict[str, Any]:
    """An error reply; ``request_id`` is None when the request's id was unreadable."""
    return {"id": request_id, "ok": False, "error": {"code": code, "message": message}}


def state_event(state: dict[str, Any]) -> dict[str, Any]:
    """The event pushed whenever the state changes."""
    return {"event": "state", "state": state}


class FieldError(Exception):
    """A field broke its rule (here or in :mod:`.urls`); becomes an invalid_request reply.

    ``reason`` is the message without the refused value, for the log.
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = message if reason is None else reason


def type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _label(container: dict[str, Any], key: str, where: str) -> str:
    value = container.get(key)
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_LABEL_CHARS:
        raise FieldError(
            f"field '{where}{key}' must be a string of 1 to {MAX_LABEL_CHARS} characters, "
            f"got {type_name(value)}" + (f" of {len(value)}" if isinstance(value, str) else "")
        )
    return value


def _record(value: object, field: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    """An object whose keys are all in ``allowed`` (the page protocol's detail rule)."""
    if not isinstance(value, dict):
        raise FieldError(f"field '{field}' must be an object, got {type_name(value)}")
    for key in value:
        if key not in allowed:
            shown = key[:40].encode("ascii", "backslashreplace").decode()
            raise FieldError(f"field '{field}' has an unexpected key {shown!r}; "
                              f"allowed: {', '.join(allowed)}")
    return value


def check_subscription(value: object, field: str = "subscription") -> bool:
    """Validate ``{active: bool}`` (exactly that key); return ``active``."""
    record = _record(value, field, ("active",))
    if "active" not in record:
        raise FieldError(f"field '{field}.active' is missing")
    active = record["active"]
    if not isinstance(active, bool):
        raise FieldError(f"field '{field}.active' must be a boolean, got {type_name(active)}")
    return active


def _hello(message: dict[str, Any]) -> Hello:
    extension = message.get("extension")
    if not isinstance(extension, dict):
        raise FieldError(f"field 'extension' must be an object, got {type_name(extension)}")
    return Hello(
        _label(extension, "id", "extension."),
        _label(extension, "version", "extension."),
        _label(extension, "build", "extension."),
    )


def check_token(value: object, field: str = "accessToken") -> str:
    """Validate an access token: 1 to 4096 visible ASCII characters."""
    if not isinstance(value, str):
        raise FieldError(f"field '{field}' must be a string, got {type_name(value)}")
    if not value:
        raise FieldError(f"field '{field}' must not be empty")
    if len(value) > MAX_TOKEN_CHARS:
        raise FieldError(
            f"field '{field}' is {len(value)} characters, limit {MAX_TOKEN_CHARS}"
        )
    # isprintable() on ASCII is 0x20-0x7e; the space is the one more to refuse
    if not (value.isascii() and value.isprintable()) or " " in value:
        bad = next(i for i, c in enumerate(value) if not "\x21" <= c <= "\x7e")
        raise FieldError(
            f"field '{field}' must be visible ASCII (0x21-0x7e); character {bad} is not"
        )
    return value


def check_token_detail(detail: object, field: str = "detail") -> SetToken:
    """The ``flattr-token`` page detail: ``{accessToken, subscription?: {active}}``."""
    record = _record(detail, field, ("accessToken", "subscription"))
    token = check_token(record.get("accessToken"), f"{field}.accessToken")
    active = None
    if "subscription" in record:
        active = check_subscription(record["subscription"], f"{field}.subscription")
    return SetToken(token, active)


def check_subscription_detail(detail: object, field: str = "detail") -> SetSubscription:
    """The ``flattr-subscription`` page detail: ``{subscription: {active}}``."""
    record = _record(detail, field, ("subscription",))
    if "subscription" not in record:
        raise FieldError(f"field '{field}.subscription' is missing")
    return SetSubscription(check_subscription(record["subscription"], f"{field}.subscription"))


def _set_token(message: dict[str, Any]) -> SetToken:
    if "detail" in message:  # the page's detail as the extension relays it
        return check_token_detail(message["detail"])
    # The flat shape of protocol 1 before `detail`: the same rules, field by field.
    token = check_token(message.get("accessToken"))
    active = None
    if "subscription" in message:
        active = check_subscription(message["subscription"])
    return SetToken(token, active)


def _set_subscription(message: dict[str, Any]) -> SetSubscription:
    if "detail" in message:
        return check_subscription_detail(message["detail"])
    if "subscription" not in message:
        raise FieldError("field 'subscription' is missing")
    return SetSubscription(check_subscription(message["subscription"]))


def _flattr(message: dict[str, Any]) -> FlattrUrls | FlattrManual:
    # Imported on the first URL: its regexes cost 1.4 ms to compile, and start-up
    # (the hello reply) needs none of them (docs/performance.md, cold start).
    from flattr_host.protocol.urls import check_url, check_urls

    manual = message.get("manual", False)
    if not isinstance(manual, bool):
        raise FieldError(f"field 'manual' must be a boolean, got {type_name(manual)}")
    urls = message.get("urls")
    if manual:
        if not isinstance(urls, list) or len(urls) != 1:
            got = f"{len(urls)} items" if isinstance(urls, list) else type_name(urls)
            raise FieldError(f"field 'urls' must hold exactly 1 URL with 'manual', got {got}")
        return FlattrManual(check_url(urls[0], "urls[0]"))
    if not isinstance(urls, list):
        raise FieldError(f"field 'urls' must be a list, got {type_name(urls)}")
    if not 1 <= len(urls) <= MAX_URLS_PER_REQUEST:
        raise FieldError(
            f"field 'urls' holds {len(urls)} items; it must hold 1 to {MAX_URLS_PER_REQUEST}"
        )
    return FlattrUrls(check_urls(urls, "urls"))


# -- attention parsers ---------------------------------------------------------
MAX_SIGNALS = 100
MAX_SITE_CHARS = 262  # a 253-character host name, ':' and a port
_TAB_SIGNALS = ("tab-activated", "url-changed", "load-finished", "audible-changed")
_SIGNAL_KINDS = (*_TAB_SIGNALS, "tab-closed", "window-focus", "idle", "activity", "reset")
_IDLE_STATES = ("active", "idle", "locked")


def _any_url(value: object, field: str) -> str:
    """A page URL as the browser reports it: any string of at most 8 KiB.

    Not-http(s) URLs (chrome:, about:, file:) are accepted and never counted.
    """
    if not isinstance(value, str):
        raise FieldError(f"field '{field}' must be a string, got {type_name(value)}")
    if len(value) > MAX_URL_BYTES // 4:
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > MAX_URL_BYTES:
            raise FieldError(f"field '{field}' of {size} bytes exceeds limit of {MAX_URL_BYTES}")
    return value


def _int_id(value: object, field: str, nullable: bool = False) -> int | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ID:
        rule = "an integer from 0 to " + str(MAX_ID) + (" or null" if nullable else "")
        raise FieldError(f"field '{field}' must be {rule}, got {type_name(value)}")
    return value


def _bool(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise FieldError(f"field '{field}' must be a boolean, got {type_name(value)}")
    return value


def _signal(item: object, where: str) -> AttentionSignal:
    if not isinstance(item, dict):
        raise FieldError(f"field '{where}' must be an object, got {type_name(item)}")
    kind = item.get("signal")
    if kind not in _SIGNAL_KINDS:
        shown = repr(kind[:64]) if isinstance(kind, str) else type_name(kind)
        rule = f"field '{where}.signal' must be one of {', '.join(_SIGNAL_KINDS)}"
        raise FieldError(f"{rule}, got {shown}", reason=rule)
    tab_id = window_id = None
    url = state = None
    incognito = audible = muted = None
    if kind in _TAB_SIGNALS:
        tab_id = _int_id(item.get("tabId"), f"{where}.tabId")
        window_id = _int_id(item.get("windowId"), f"{where}.windowId")
        incognito = _bool(item.get("incognito"), f"{where}.incognito")
        raw_url = item.get("url")
        url = None if raw_url is None else _any_url(raw_url, f"{where}.url")
        if incognito:
            url = None  # a private URL is never kept, not even in a parsed request
        if kind == "audible-changed":
            audible = _bool(item.get("audible"), f"{where}.audible")
            muted = _bool(item.get("muted"), f"{where}.muted")
    elif kind == "tab-closed":
        tab_id = _int_id(item.get("tabId"), f"{where}.tabId")
    elif kind == "window-focus":
        if "windowId" not in item:
            raise FieldError(f"field '{where}.windowId' is missing (null means no window)")
        window_id = _int_id(item["windowId"], f"{where}.windowId", nullable=True)
    elif kind == "idle":
        state = item.get("state")
        if state not in _IDLE_STATES:
            raise FieldError(f"field '{where}.state' must be one of {', '.join(_IDLE_STATES)}, "
                              f"got {type_name(state)}")
    return AttentionSignal(kind, tab_id, window_id, url, incognito, audible, muted, state)


def _attention_signals(message: dict[str, Any]) -> AttentionSignals:
    signals = message.get("signals")
    if not isinstance(signals, list):
        raise FieldError(f"field 'signals' must be a list, got {type_name(signals)}")
    if not 1 <= len(signals) <= MAX_SIGNALS:
        raise FieldError(
            f"field 'signals' holds {len(signals)} items; it must hold 1 to {MAX_SIGNALS}"
        )
    return AttentionSignals(tuple(_signal(s, f"signals[{i}]") for i, s in enumerate(signals)))


def _attention_page(message: dict[str, Any]) -> AttentionPage:
    return AttentionPage(_any_url(message.get("url"), "url"))


def _attention_site(message: dict[str, Any]) -> AttentionSite:
    site = message.get("site")
    if not isinstance(site, str) or not 1 <= len(site) <= MAX_SITE_CHARS:
        raise FieldError(
            f"field 'site' must be a string of 1 to {MAX_SITE_CHARS} characters, "
            f"got {type_name(site)}" + (f" of {len(site)}" if isinstance(site, str) else "")
        )
    from flattr_host.protocol.urlnorm import UrlError, site_of  # not on the hello path

    # Only the keys the host hands out in attention-page (urlnorm.site_of) are valid.
    for scheme in ("https", "http"):
        try:
            if site_of(f"{scheme}://{site}/") == site:
                return AttentionSite(site, _bool(message.get("enabled"), "enabled"))
        except UrlError:
            continue
    rule = "field 'site' is not a site key (host without 'www.', lower case, optional port)"
    raise FieldError(f"{rule}: {site[:64]!r}", reason=rule)


def _attention_count_all(message: dict[str, Any]) -> AttentionCountAll:
    return AttentionCountAll(_bool(message.get("enabled"), "enabled"))


# -- end of attention parsers ---------------------------------------------------------

# Types without fields share one immutable body.
_GET_STATE, _SIGN_OUT, _FLUSH, _RETRY_FAILED = GetState(), SignOut(), Flush(), RetryFailed()
_ATTENTION_SETTINGS = AttentionSettings()

_PARSERS: dict[str, Any] = {
    "hello": _hello,
    "get-state": lambda _m: _GET_STATE,
    "set-token": _set_token,
    "set-subscription": _set_subscription,
    "sign-out": lambda _m: _SIGN_OUT,
    "flattr": _flattr,
    "flush": lambda _m: _FLUSH,
    "retry-failed": lambda _m: _RETRY_FAILED,
    # attention
    "attention-signals": _attention_signals,
    "attention-page": _attention_page,
    "attention-settings": lambda _m: _ATTENTION_SETTINGS,
    "attention-site": _attention_site,
    "attention-count-all": _attention_count_all,
}
