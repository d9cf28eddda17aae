"""The rule for a URL to flattr (docs/protocol.md, "URLs").

Its own module because its regexes take 1.4 ms to compile: :mod:`.messages`
imports it on the first request carrying a URL, never on the way to the first
reply. The extension's lib/validate.js applies the same rule;
tests/data/protocol_cases.json holds the cases both must agree on. One regex scan
per rule instead of a Python loop per character: this runs on every URL of every
`flattr` request (docs/performance.md, durable enqueue).
"""

from __future__ import annotations

import re

from flattr_host.protocol.messages import MAX_URL_BYTES, FieldError, lone_surrogate_at, type_name

# Never in a flattr URL: C0 controls, space, DEL, C1 controls, Unicode spaces and
# line separators, the byte-order mark, and the backslash (WHATWG parsers read it
# as "/", others as a character: two readers would see two different hosts).
_FORBIDDEN = (r"\x00-\x20\x7f-\x9f\\\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
              r"\ufeff")  # the set's members, for a [...] class
_URL_FORBIDDEN = re.compile("[" + _FORBIDDEN + "]")
_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
# After "scheme://": the authority, up to the first "/", "?" or "#".
_URL_AUTHORITY = re.compile(r"[^/?#]*")
_HOST_NAME = re.compile(r"[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*")
_IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
                   r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])")
_DIGITS = re.compile(r"[0-9]+")
_HEX_GROUP = re.compile(r"[0-9A-Fa-f]{1,4}")
# The common shape in one scan: a lower-case http(s) URL whose host name has a
# letter in its last label, an optional port of 1 to 65535 without leading zero,
# and nothing forbidden after it. Valid by every rule of check_url, which then skips
# the step-by-step checks (tests/unit/test_protocol_cases.py holds it to that).
_PLAIN_URL = re.compile(
    r"https?://(?:[A-Za-z0-9_\-]+\.)*[0-9]*[A-Za-z_\-][A-Za-z0-9_\-]*"
    r"(?::(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]"
    r"|6553[0-5]))?"
    r"(?:[/?#][^" + _FORBIDDEN + r"\ud800-\udfff]*)?"
)


# Many URLs of the common shape in one scan, joined by "\n": no plain URL holds a
# "\n" (a control character), so each piece must match _PLAIN_URL on its own.
# Compiled on the first list of several URLs (1 ms): a 1-URL request needs none.
_plain_urls: list[re.Pattern[str]] = []


def _plain_list() -> re.Pattern[str]:
    if not _plain_urls:
        _plain_urls.append(re.compile(f"(?:{_PLAIN_URL.pattern}\n)*{_PLAIN_URL.pattern}"))
    return _plain_urls[0]


def check_urls(urls: list[object], field: str) -> tuple[str, ...]:
    """:func:`check_url` for every item of a non-empty list (``field[i]`` in errors).

    A list of several plain URLs (the common shape, see ``_PLAIN_URL``) is checked
    in one regex scan over all of them instead of one per URL (docs/performance.md,
    durable enqueue); any other list item by item, with the same verdicts.
    """
    if (len(urls) > 1 and {*map(type, urls)} == {str}
            and max(map(len, urls)) <= MAX_URL_BYTES // 4  # type: ignore[arg-type]
            and _plain_list().fullmatch("\n".join(urls))):  # type: ignore[arg-type]
        return tuple(urls)  # type: ignore[arg-type]
    return tuple(check_url(url, f"{field}[{i}]") for i, url in enumerate(urls))


def check_url(url: object, field: str) -> str:
    """Validate one URL to flattr (docs/protocol.md, "URLs"): ``http(s)://host``
    with an optional port, path, query and fragment; an ASCII host name, IPv4 or
    bracketed IPv6 address; no user info; no space, control character, backslash or
    lone surrogate; at most 8,192 bytes in UTF-8. Returned unchanged."""
    if not isinstance(url, str):
        raise FieldError(f"field '{field}' must be a string, got {type_name(url)}")
    if len(url) > MAX_URL_BYTES // 4:  # else even 4 bytes per character fit the limit
        # A lone surrogate counts 3 bytes, as JavaScript's TextEncoder counts U+FFFD.
        size = len(url.encode("utf-8", "surrogatepass"))
        if size > MAX_URL_BYTES:
            raise FieldError(
                f"field '{field}' is {size} bytes, limit {MAX_URL_BYTES}"
            )
    if _PLAIN_URL.fullmatch(url):
        return url
    return check_url_rules(url, field)


def check_url_rules(url: str, field: str) -> str:
    """:func:`check_url` after the type and size, rule by rule (no shortcut)."""
    at = lone_surrogate_at(url)
    if at is not None:
        raise FieldError(f"field '{field}' has a lone surrogate at character {at}")
    bad = _URL_FORBIDDEN.search(url)
    if bad is not None:
        raise FieldError(f"field '{field}' must not contain spaces, control characters or "
                          f"backslashes; character {bad.start()} is U+{ord(bad.group()):04X}")
    scheme = _URL_SCHEME.match(url)
    if scheme is None or scheme.group(1).lower() not in ("http", "https"):
        raise FieldError(f"field '{field}' must be an http or https URL")
    start = scheme.end()
    if not url.startswith("//", start):
        raise FieldError(f"field '{field}' must be an absolute URL (scheme://host)")
    authority = _URL_AUTHORITY.match(url, start + 2)
    assert authority is not None  # matches the empty string at least
    _check_authority(authority.group(), field)
    return url


def _check_authority(authority: str, field: str) -> None:
    if "@" in authority:
        raise FieldError(f"field '{field}' must not contain a user name or password")
    if authority.startswith("["):
        end = authority.find("]")
        host, rest = (authority, "") if end < 0 else (authority[: end + 1], authority[end + 1 :])
    else:
        host, colon, port = authority.partition(":")
        rest = colon + port
    if rest:
        port = rest[1:]
        if not rest.startswith(":") or not _DIGITS.fullmatch(port) or not (
            len(port) <= 5 and 1 <= int(port) <= 65535
        ):
            raise FieldError(f"field '{field}' has port {rest[:8]!r}; it must be 1 to 65535",
                              reason=f"field '{field}' has a port that is not 1 to 65535")
    if not host:
        raise FieldError(f"field '{field}' must name a host")
    if host.startswith("["):
        if not (host.endswith("]") and _is_ipv6(host[1:-1])):
            raise FieldError(f"field '{field}' has an invalid IPv6 address")
        return
    if not _HOST_NAME.fullmatch(host):
        raise FieldError(f"field '{field}' must have an ASCII host name (labels of letters, "
                          "digits, '-' and '_'; IDN in its xn-- form)")
    last = host.rpartition(".")[2]
    if _DIGITS.fullmatch(last) and not _IPV4.fullmatch(host):
        raise FieldError(f"field '{field}' has a host ending in a number that is not an "
                          "IPv4 address (four parts of 0 to 255)")


def _is_ipv6(text: str) -> bool:
    """An IPv6 address in RFC 4291 text form, optionally ending in IPv4; no zone."""
    head, gap, tail = text.partition("::")
    if "::" in tail:
        return False
    groups = [g for part in (head, tail) if part for g in part.split(":")]
    # Only the very last group may be an IPv4 address, and it fills two groups.
    if groups and "." in groups[-1] and (tail or not gap):
        if not _IPV4.fullmatch(groups[-1]):
            return False
        groups[-1:] = ["0", "0"]
    if not all(_HEX_GROUP.fullmatch(g) for g in groups):
        return False
    return len(groups) < 8 if gap else len(groups) == 8
