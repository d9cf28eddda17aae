"""URL normalization (docs/attention.md, "URL normalization")."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flattr_host.core.errors import FlattrHostError
from flattr_host.protocol.urlnorm import UrlError, normalize, site_of


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://example.com/a/b", "https://example.com/a/b"),
        ("HTTPS://Example.COM/Path/Kept", "https://example.com/Path/Kept"),
        ("http://user:secret@example.com/x", "http://example.com/x"),
        ("http://user@example.com/x", "http://example.com/x"),
        ("https://example.com/x#section-2", "https://example.com/x"),
        ("https://example.com/x?utm_source=feed&id=3", "https://example.com/x"),
        ("https://example.com/x?", "https://example.com/x"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com:443/x", "https://example.com/x"),
        ("http://example.com:80/x", "http://example.com/x"),
        ("http://example.com:8080/x", "http://example.com:8080/x"),
        ("https://example.com:80/x", "https://example.com:80/x"),
        ("http://[::1]:8443/x", "http://[::1]:8443/x"),
        ("https://127.0.0.1:9000/p?q=1", "https://127.0.0.1:9000/p"),
        # YouTube: the video id is the page; everything else goes.
        (
            "https://www.youtube.com/watch?v=abc123&t=42s&list=PL1#x",
            "https://www.youtube.com/watch?v=abc123",
        ),
        ("https://www.youtube.com/watch?list=PL1&v=abc123", "https://www.youtube.com/watch?v=abc123"),
        ("https://m.youtube.com/watch?v=a&v=b", "https://m.youtube.com/watch?v=a"),
        ("https://YouTube.com/watch?v=Q", "https://youtube.com/watch?v=Q"),
        ("https://www.youtube.com/watch?t=3", "https://www.youtube.com/watch"),
        ("https://www.youtube.com/results?v=abc", "https://www.youtube.com/results"),
        ("https://notyoutube.com/watch?v=abc", "https://notyoutube.com/watch"),
        ("https://youtube.com.evil.example/watch?v=abc", "https://youtube.com.evil.example/watch"),
    ],
)
def test_normalize_examples(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "ftp://example.com/x",
        "chrome://newtab/",
        "about:blank",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "example.com/x",
        "http:///x",
        "https://",
        "http://example.com:99999/",
        "http://[::1/",
        "",
    ],
)
def test_rejects_uncountable(raw: str) -> None:
    with pytest.raises(UrlError):
        normalize(raw)


def test_error_is_value_error_under_host_root() -> None:
    with pytest.raises(ValueError, match="scheme 'ftp'"):
        normalize("ftp://x/")
    assert issubclass(UrlError, FlattrHostError)


def test_rejects_non_string() -> None:
    with pytest.raises(UrlError, match="must be a string, got bytes"):
        normalize(b"https://x/")  # type: ignore[arg-type, unused-ignore]


@pytest.mark.parametrize(
    ("raw", "site"),
    [
        ("https://www.example.com/a", "example.com"),
        ("https://blog.example.com/a", "blog.example.com"),
        ("http://127.0.0.1:8443/x", "127.0.0.1:8443"),
        ("https://u:p@WWW.Example.com:443/", "example.com"),
    ],
)
def test_site_of(raw: str, site: str) -> None:
    assert site_of(raw) == site


# Property tests: any URL built from arbitrary parts normalizes idempotently and
# never keeps a fragment or credentials.
_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    max_size=20,
)
_host = st.from_regex(
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,10}[A-Za-z0-9])?(\.[A-Za-z]{2,5}){0,2}", fullmatch=True
)
_user = _text.filter(lambda s: not set(s) & set("@/?#:"))
_password = _text.filter(lambda s: not set(s) & set("@/?#"))
_urls = st.builds(
    lambda scheme, user, host, port, path, query, frag: (
        f"{scheme}://{user}{host}{port}/{path}{query}{frag}"
    ),
    st.sampled_from(["http", "https", "HTTP", "Https"]),
    st.one_of(st.just(""), st.builds(lambda u, p: f"{u}:{p}@", _user, _password)),
    st.one_of(_host, st.sampled_from(["www.youtube.com", "youtube.com", "m.youtube.com"])),
    st.one_of(st.just(""), st.integers(min_value=1, max_value=65535).map(lambda p: f":{p}")),
    st.one_of(_text, st.just("watch")),
    st.one_of(st.just(""), _text.map(lambda q: "?" + q), _text.map(lambda v: "?a=1&v=" + v)),
    st.one_of(st.just(""), _text.map(lambda f: "#" + f)),
)


@given(_urls)
def test_normalize_is_idempotent_and_strips(url: str) -> None:
    try:
        once = normalize(url)
    except UrlError:
        return  # rejected inputs are fine; accepted ones must satisfy the rest
    assert normalize(once) == once
    assert "#" not in once
    parts = urlsplit(once)
    assert parts.username is None
    assert parts.password is None
    assert "@" not in parts.netloc
    assert parts.scheme in ("http", "https")
    assert parts.netloc == parts.netloc.lower()
    if parts.query:
        assert parts.path == "/watch"
        assert parts.query.startswith("v=")
        assert "&" not in parts.query


@given(st.text(max_size=60))
def test_arbitrary_text_is_rejected_or_idempotent(text: str) -> None:
    try:
        once = normalize(text)
    except UrlError:
        return
    assert normalize(once) == once
    assert "#" not in once
    assert urlsplit(once).username is None
