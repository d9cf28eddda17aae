"""Who may start the host."""

from __future__ import annotations

import pytest

from flattr_host.core.errors import CallerRefused
from flattr_host.runtime.caller import Caller, identify, looks_like_browser_launch

CHROME_ID = "jimjcpbicodoomdmhndojmkjllmolafb"
ALLOWED = (CHROME_ID, "companion@flattr-companion.example")


def test_chrome_origin() -> None:
    assert identify([f"chrome-extension://{CHROME_ID}/"], ALLOWED) == Caller("chromium", CHROME_ID)
    # Windows adds --parent-window.
    assert identify([f"chrome-extension://{CHROME_ID}/", "--parent-window=0"], ALLOWED)


def test_firefox_arguments() -> None:
    caller = identify(["/home/u/.mozilla/native-messaging-hosts/com.flattr.companion.json",
                       "companion@flattr-companion.example"], ALLOWED)
    assert caller == Caller("firefox", "companion@flattr-companion.example")


@pytest.mark.parametrize(
    ("args", "text"),
    [
        ([f"chrome-extension://{'a' * 32}/"], "is not allowed"),
        (["chrome-extension://NOT-AN-ID/"], "malformed extension origin"),
        (["/x/host.json", "evil@example.org"], "'evil@example.org' is not allowed"),
        ([], "not started by a browser"),
        (["--help"], "not started by a browser"),
    ],
)
def test_refusals(args: list[str], text: str) -> None:
    with pytest.raises(CallerRefused, match=text):
        identify(args, ALLOWED)


def test_browser_launch_detection() -> None:
    assert looks_like_browser_launch(["chrome-extension://x/"])
    assert looks_like_browser_launch(["/p/m.json", "id@x"])
    assert not looks_like_browser_launch(["status"])
    assert not looks_like_browser_launch([])


@pytest.mark.parametrize(
    "origin",
    [
        f"chrome-extension://{CHROME_ID}",  # no slash: accepted
        f"chrome-extension://{CHROME_ID}//",
        f"chrome-extension://{CHROME_ID[:-1]}q/",
        f"chrome-extension://{CHROME_ID}x/",
        f"chrome-extension://{CHROME_ID.upper()}/",
        "chrome-extension:///",
    ],
)
def test_origin_shapes(origin: str) -> None:
    if origin == f"chrome-extension://{CHROME_ID}":
        assert identify([origin], ALLOWED).extension_id == CHROME_ID
        return
    with pytest.raises(CallerRefused, match="malformed extension origin"):
        identify([origin], ALLOWED)
