"""URL normalization for attention counting (pure, stdlib only).

Attention is counted per *normalized* URL so that the same page reached with a
different fragment, tracking query or login prefix accrues to one counter.

Rules (docs/attention.md, "URL normalization"):

- only ``http`` and ``https`` URLs with a host are accepted; anything else raises
  :class:`UrlError` (a :class:`ValueError`);
- user name and password are dropped;
- the fragment is dropped;
- the query is dropped, except the first ``v`` parameter on YouTube ``/watch``
  pages (otherwise every video would count as the same page);
- scheme and host are lower-cased.

Two further choices of ours, so equal pages compare equal: the default port of
the scheme (80, 443) is dropped, and an empty path becomes ``/``.

:func:`normalize` is idempotent: ``normalize(normalize(u)) == normalize(u)``.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from flattr_host.core.errors import FlattrHostError

__all__ = ["UrlError", "normalize", "site_of"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_YOUTUBE_DOMAIN = "youtube.com"


class UrlError(FlattrHostError, ValueError):
    """The URL cannot be counted: wrong scheme, no host, or malformed."""


def normalize(url: str) -> str:
    """Return the normalized form of an absolute ``http(s)`` URL.

    Raises :class:`UrlError` when ``url`` is not a string, not ``http``/``https``,
    has no host, a host with whitespace or control characters, or an invalid
    port.
    """
    if not isinstance(url, str):
        raise UrlError(f"URL must be a string, got {type(url).__name__}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # bad IPv6 literal, port out of range, ...
        raise UrlError(f"malformed URL {url!r}: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise UrlError(f"only http and https URLs are counted, got scheme {scheme!r}")
    host = parts.hostname  # already lower-cased, userinfo and port removed
    if not host:
        raise UrlError(f"URL has no host: {url!r}")
    if any(ch.isspace() or ord(ch) < 0x20 or ch == "\x7f" for ch in host):
        raise UrlError(f"host contains whitespace or control characters: {host!r}")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    path = parts.path or "/"
    return urlunsplit((scheme, netloc, path, _kept_query(host, path, parts.query), ""))


def site_of(url: str) -> str:
    """Return the site key of ``url``: its host (and non-default port), without ``www.``.

    This is the unit the user opts in ("auto-flattr this site"). ``url`` is
    normalized first, so the same rules and errors apply.
    """
    netloc = urlsplit(normalize(url)).netloc
    return netloc.removeprefix("www.")


def _kept_query(host: str, path: str, query: str) -> str:
    """The part of the query that identifies the page: only YouTube's video id."""
    if path != "/watch" or not (host == _YOUTUBE_DOMAIN or host.endswith("." + _YOUTUBE_DOMAIN)):
        return ""
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "v":
            # quote(safe="") makes the value round-trip through parse_qsl unchanged,
            # which keeps normalize() idempotent.
            return "v=" + quote(value, safe="")
    return ""
