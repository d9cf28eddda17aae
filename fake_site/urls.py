"""URL rules: what counts as a flattrable URL, and reading auto-submit URLs.

An auto-submit URL (document 001 and api-v2/auto-submit.md) is
``http(s)://flattr.com/submit/auto?url=...&user_id=...|owner=...&title=...``;
it names the URL to flattr and the metadata to create the thing with.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

MAX_URL_BYTES = 8192
FLATTR_HOSTS = frozenset({"flattr.com", "www.flattr.com"})
AUTO_SUBMIT_PATH = "/submit/auto"


def is_flattrable(url: object) -> bool:
    """An absolute http(s) URL with a host, at most MAX_URL_BYTES bytes in UTF-8."""
    if not isinstance(url, str) or not url or len(url.encode()) > MAX_URL_BYTES:
        return False
    if any(ch in url for ch in " \t\r\n"):
        return False
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        _ = parts.port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(hostname)


@dataclass(frozen=True)
class AutoSubmit:
    """The parameters of an auto-submit URL."""

    url: str
    user_id: str | None
    owner: str | None
    title: str
    description: str
    language: str
    category: str
    tags: tuple[str, ...]
    hidden: bool


def _first(params: dict[str, list[str]], name: str, default: str = "") -> str:
    values = params.get(name)
    return values[0].strip() if values else default


def auto_submit_from_params(params: dict[str, list[str]]) -> AutoSubmit | None:
    """Build from query parameters; None when ``url`` is missing or not flattrable."""
    url = _first(params, "url")
    if not is_flattrable(url):
        return None
    tags = tuple(t.strip() for t in _first(params, "tags").split(",") if t.strip())
    return AutoSubmit(
        url=url,
        user_id=_first(params, "user_id") or _first(params, "uid") or None,
        owner=_first(params, "owner") or None,
        title=_first(params, "title") or url,
        description=_first(params, "description"),
        language=_first(params, "language", "en_GB") or "en_GB",
        category=_first(params, "category", "rest") or "rest",
        tags=tags,
        hidden=_first(params, "hidden") in ("1", "true"),
    )


def is_auto_submit(url: str) -> bool:
    """Whether ``url`` points at flattr.com's auto-submit path."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return (parts.hostname or "") in FLATTR_HOSTS and parts.path.rstrip("/") == AUTO_SUBMIT_PATH


def parse_auto_submit(url: str) -> AutoSubmit | None:
    """The auto-submit parameters of ``url``; None if it is not a valid auto-submit URL."""
    if not is_auto_submit(url):
        return None
    return auto_submit_from_params(parse_qs(urlsplit(url).query))
