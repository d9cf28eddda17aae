"""Who started the host: the browser's command line, checked before anything else.

Chrome, Chromium, Edge, Brave and Vivaldi pass ``chrome-extension://<id>/`` as the
first argument (plus ``--parent-window=N`` on Windows). Firefox passes the path of
the host manifest and then the add-on id (Chrome and MDN native messaging docs).
"""

from __future__ import annotations

from flattr_host.core.errors import CallerRefused
from flattr_host.core.values import Value

_CHROME_PREFIX = "chrome-extension://"
_ID_LETTERS = frozenset("abcdefghijklmnop")  # Chrome ids: 32 letters a-p


def _chrome_id(origin: str) -> str | None:
    """The id in ``chrome-extension://<id>/`` (slash optional), or None if malformed."""
    ext_id = origin[len(_CHROME_PREFIX):].removesuffix("/")
    if len(ext_id) == 32 and _ID_LETTERS.issuperset(ext_id):
        return ext_id
    return None


class Caller(Value):
    __slots__ = ("family", "extension_id")
    family: str  # "chromium" or "firefox"
    extension_id: str


def looks_like_browser_launch(args: list[str]) -> bool:
    """True when ``args`` (argv without the program) look like a browser starting us."""
    if not args:
        return False
    if args[0].startswith("chrome-extension://"):
        return True
    return len(args) >= 2 and args[0].endswith(".json")


def identify(args: list[str], allowed: tuple[str, ...]) -> Caller:
    """The calling extension, or CallerRefused naming what was wrong."""
    if args and args[0].startswith("chrome-extension://"):
        ext_id = _chrome_id(args[0])
        if ext_id is None:
            raise CallerRefused(f"malformed extension origin {args[0][:100]!r}")
        caller = Caller("chromium", ext_id)
    elif len(args) >= 2 and args[0].endswith(".json"):
        caller = Caller("firefox", args[1][:200])
    else:
        raise CallerRefused("not started by a browser (expected chrome-extension://ID/ "
                            "or a manifest path and an add-on id)")
    if caller.extension_id not in allowed:
        raise CallerRefused(f"extension {caller.extension_id!r} is not allowed "
                            f"(allowed: {', '.join(allowed)})")
    return caller
