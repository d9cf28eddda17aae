"""Where the site may send a browser, and which pages refuse to be framed.

A redirect target taken from a request (``next`` after log-in) is accepted only
as a path on this origin, *as given*: nothing is stripped, decoded or
normalised first, so what is checked is exactly what goes into ``Location``.
Browsers remove TAB, CR and LF from URLs and read ``\\`` as ``/``, which turns
``/<TAB>/evil.example`` or ``/\\evil.example`` into the network-path reference
``//evil.example``; such values are refused, not cleaned (docs/fake-site.md,
"Redirects and framing").

The ``Location`` header is written verbatim: aiohttp's redirect exceptions
re-parse it with yarl, which drops TAB/CR/LF and would undo the check.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

#: Longest ``next`` accepted (characters); longer values fall back to the default.
MAX_NEXT = 2048

#: Headers of pages that must never be shown inside another site's frame
#: (consent, log-in, the handshake and the subscription controls).
FRAME_DENY = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
}


def local_path(value: object) -> str | None:
    """``value`` if it is a same-origin path (``/...``, not ``//...``), else None.

    Accepted: a string of at most MAX_NEXT printable ASCII characters (``!`` to
    ``~``) without a backslash, starting with one ``/`` that is not followed by
    another ``/``, with no scheme and no authority when parsed. Anything else
    (control characters, spaces, backslashes, non-ASCII, ``//host``,
    ``https:...``, ``/\\host``) is refused as a whole.
    """
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_NEXT:
        return None
    if any(not "!" <= ch <= "~" or ch == "\\" for ch in value):
        return None
    if not value.startswith("/") or value.startswith("//"):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme or parts.netloc:
        return None
    return value


def safe_next(value: object, default: str = "/") -> str:
    """The redirect target for ``value``: itself when :func:`local_path` accepts it,
    else ``default``."""
    return local_path(value) or default


def see_other(path: str) -> web.Response:
    """A 303 to a same-origin ``path`` (checked again here), ``Location`` verbatim."""
    checked = local_path(path)
    if checked is None:
        raise ValueError(f"refusing to redirect to {path!r}: not a same-origin path")
    return web.Response(status=303, headers={"Location": checked})
