"""Parsing of the attention requests (docs/protocol.md#attention), and the light path."""

from __future__ import annotations

from typing import Any

import pytest

from flattr_host.core.errors import RequestError
from flattr_host.protocol.messages import (
    AttentionCountAll,
    AttentionPage,
    AttentionSettings,
    AttentionSignal,
    AttentionSignals,
    AttentionSite,
    FlattrManual,
    FlattrUrls,
    parse_request,
)
from tests.support.loaded import loaded_after


def parse(type_: str, **fields: Any) -> Any:
    return parse_request({"id": 3, "type": type_, **fields}).body


def refused(type_: str, **fields: Any) -> str:
    with pytest.raises(RequestError) as info:
        parse(type_, **fields)
    assert info.value.code == "invalid_request"
    assert info.value.request_id == 3
    return info.value.message


def test_every_signal_kind() -> None:
    tab = {"tabId": 4, "windowId": 2, "url": "https://a.example/", "incognito": False}
    body = parse("attention-signals", signals=[
        {"signal": "reset"},
        {"signal": "tab-activated", **tab},
        {"signal": "url-changed", **tab},
        {"signal": "load-finished", **tab, "url": None},
        {"signal": "audible-changed", **tab, "audible": True, "muted": False},
        {"signal": "tab-closed", "tabId": 4},
        {"signal": "window-focus", "windowId": None},
        {"signal": "window-focus", "windowId": 7},
        {"signal": "idle", "state": "locked"},
        {"signal": "activity", "extra": "ignored"},
    ])
    assert isinstance(body, AttentionSignals)
    kinds = [s.kind for s in body.signals]
    assert kinds == ["reset", "tab-activated", "url-changed", "load-finished", "audible-changed",
                     "tab-closed", "window-focus", "window-focus", "idle", "activity"]
    assert body.signals[1] == AttentionSignal("tab-activated", 4, 2, "https://a.example/", False,
                                              None, None, None)
    assert body.signals[3].url is None
    assert (body.signals[4].audible, body.signals[4].muted) == (True, False)
    assert body.signals[6].window_id is None and body.signals[7].window_id == 7
    assert body.signals[8].state == "locked"


def test_incognito_url_is_dropped_by_the_parser() -> None:
    body = parse("attention-signals", signals=[
        {"signal": "tab-activated", "tabId": 1, "windowId": 1, "url": "https://secret.example/",
         "incognito": True}])
    assert body.signals[0].url is None and "secret" not in repr(body)


def test_not_http_urls_are_accepted_for_signals_and_pages() -> None:
    body = parse("attention-signals", signals=[
        {"signal": "url-changed", "tabId": 1, "windowId": 1, "url": "chrome://newtab/",
         "incognito": False}])
    assert body.signals[0].url == "chrome://newtab/"
    assert parse("attention-page", url="about:blank") == AttentionPage("about:blank")


@pytest.mark.parametrize(("signals", "words"), [
    ("nope", "field 'signals' must be a list, got str"),
    ([], "holds 0 items; it must hold 1 to 100"),
    ([{"signal": "activity"}] * 101, "holds 101 items"),
    ([{"signal": "activity"}, {"signal": "dance"}], "field 'signals[1].signal' must be one of"),
    ([5], "field 'signals[0]' must be an object, got int"),
    ([{"signal": "tab-closed", "tabId": -1}], "field 'signals[0].tabId' must be an integer"),
    ([{"signal": "tab-closed", "tabId": True}], "'signals[0].tabId'"),
    ([{"signal": "tab-closed", "tabId": 2**53}], "'signals[0].tabId'"),
    ([{"signal": "window-focus"}], "'signals[0].windowId' is missing (null means no window)"),
    ([{"signal": "window-focus", "windowId": "1"}],
     "'signals[0].windowId' must be an integer from 0 to 9007199254740991 or null, got str"),
    ([{"signal": "idle", "state": "asleep"}], "'signals[0].state' must be one of active, idle"),
    ([{"signal": "tab-activated", "tabId": 1, "windowId": 1, "url": 5, "incognito": False}],
     "'signals[0].url' must be a string, got int"),
    ([{"signal": "tab-activated", "tabId": 1, "windowId": 1, "url": "https://a/" + "x" * 8192,
       "incognito": False}], "'signals[0].url' of 8202 bytes exceeds limit of 8192"),
    ([{"signal": "tab-activated", "tabId": 1, "windowId": 1, "url": None}],
     "'signals[0].incognito' must be a boolean, got null"),
    ([{"signal": "audible-changed", "tabId": 1, "windowId": 1, "url": None, "incognito": False,
       "audible": True}], "'signals[0].muted' must be a boolean"),
])
def test_bad_signals_name_the_field(signals: Any, words: str) -> None:
    assert words in refused("attention-signals", signals=signals)


def test_settings_requests() -> None:
    assert parse("attention-settings") == AttentionSettings()
    assert parse("attention-site", site="a.example", enabled=True) == AttentionSite("a.example",
                                                                                      True)
    assert parse("attention-count-all", enabled=False) == AttentionCountAll(False)
    assert "field 'enabled' must be a boolean" in refused("attention-site", site="a", enabled=1)
    assert "field 'site' must be a string of 1 to 262" in refused("attention-site", site="",
                                                                  enabled=True)
    assert "field 'enabled'" in refused("attention-count-all")
    assert "field 'url' must be a string" in refused("attention-page")


def test_site_keys_are_canonical() -> None:
    for good in ("a.example", "a.example:8080", "a.example:80", "127.0.0.1"):
        assert parse("attention-site", site=good, enabled=True).site == good
    for bad in ("www.a.example", "A.example", "a.example/x", "a.example:0x", " a", "a b"):
        assert "is not a site key" in refused("attention-site", site=bad, enabled=True)


def test_manual_flattr_is_a_flag_on_flattr() -> None:
    assert parse("flattr", urls=["https://a.example/x"], manual=True) == FlattrManual(
        "https://a.example/x")
    assert parse("flattr", urls=["https://a.example/x"], manual=False) == FlattrUrls(
        ("https://a.example/x",))
    assert "exactly 1 URL" in refused("flattr", urls=["https://a/", "https://b/"], manual=True)
    assert "field 'manual' must be a boolean" in refused("flattr", urls=["https://a/"], manual=1)
    assert "must be an http or https URL" in refused("flattr", urls=["ftp://a/"], manual=True)


def test_hello_path_does_not_load_the_engine() -> None:
    """Answering hello imports neither the engine nor dataclasses (docs/performance.md)."""
    code = (
        "from flattr_host.attention import store as attention_store\n"
        "from flattr_host.tools import cli\n"
        "from flattr_host.protocol import messages\n"
        "from flattr_host.runtime import service, stdio\n"
    )
    watched = ("flattr_host.attention.engine", "flattr_host.attention.service",
               "flattr_host.protocol.urlnorm", "dataclasses")
    assert loaded_after(code, watched) == []
