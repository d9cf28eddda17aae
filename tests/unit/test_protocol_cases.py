"""The page protocol's shared cases (tests/data/protocol_cases.json) against the host.

The same file drives tests/js/validate.test.js against extension/lib/validate.js
(``node --test``, run by ``make jstest`` and by the last test here), so the two
implementations of docs/protocol.md's field rules cannot drift apart.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flattr_host import messages as m
from flattr_host.errors import RequestError

ROOT = Path(__file__).resolve().parents[2]
CASES = json.loads((ROOT / "tests" / "data" / "protocol_cases.json").read_text("utf-8"))


def expand(value: Any) -> Any:
    """Resolve ``{"$repeat": [prefix, unit, count, suffix]}`` anywhere in a case."""
    if isinstance(value, dict):
        if list(value) == ["$repeat"]:
            prefix, unit, count, suffix = value["$repeat"]
            return prefix + unit * count + suffix
        return {key: expand(item) for key, item in value.items()}
    if isinstance(value, list):
        return [expand(item) for item in value]
    return value


def params(section: str) -> list[Any]:
    return [pytest.param(expand(case["value"]), case["valid"], id=f"{i}-{case['why']}")
            for i, case in enumerate(CASES[section])]


def request(message: dict[str, Any]) -> m.Request | RequestError:
    try:
        return m.parse_request({"id": 1, **message})
    except RequestError as exc:
        assert exc.code == m.INVALID_REQUEST
        assert exc.request_id == 1
        return exc


def test_the_limits_are_the_hosts() -> None:
    for name, value in CASES["limits"].items():
        assert getattr(m, name) == value, name


@pytest.mark.parametrize(("url", "valid"), params("url"))
def test_url(url: Any, valid: bool) -> None:
    for manual in (False, True):
        reply = request({"type": "flattr", "urls": [url], "manual": manual})
        if valid:
            assert isinstance(reply, m.Request), reply
            assert reply.body in (m.FlattrUrls((url,)), m.FlattrManual(url))
        else:
            assert isinstance(reply, RequestError)
            assert "'urls[0]'" in reply.message


def rules_verdict(url: str) -> bool:
    try:
        m.check_url_rules(url, "u")
    except m._FieldError:
        return False
    return True


@pytest.mark.parametrize(("url", "valid"), params("url"))
def test_url_shortcut_agrees_with_the_rules(url: Any, valid: bool) -> None:
    """check_url accepts the common shape in one regex scan; that scan may accept
    only what the rule-by-rule path accepts."""
    if not isinstance(url, str) or len(url.encode("utf-8", "surrogatepass")) > m.MAX_URL_BYTES:
        return
    assert rules_verdict(url) == valid
    if m._PLAIN_URL.fullmatch(url):
        assert valid


URL_PIECES = st.sampled_from(["http", "https", "HTTP", "://", ":", "/", "//", "?", "#", "@",
                              ".", "..", "-", "_", "a", "Z", "9", "0", "1.2.3.4", "256",
                              "[", "]", "::", "ffff", "65535", "65536", "080", " ", "\\",
                              "\t", "\x85", "\u00a0", "\ud800", "ü", "%", "xn--"])


@given(st.lists(URL_PIECES, max_size=14).map("".join))
def test_url_shortcut_never_accepts_what_the_rules_refuse(text: str) -> None:
    for url in (text, "http://" + text, "https://a.example" + text):
        if m._PLAIN_URL.fullmatch(url):
            assert rules_verdict(url), url


@pytest.mark.parametrize(("token", "valid"), params("accessToken"))
def test_access_token(token: Any, valid: bool) -> None:
    for message in ({"accessToken": token}, {"detail": {"accessToken": token}}):
        reply = request({"type": "set-token", **message})
        if valid:
            assert isinstance(reply, m.Request), reply
            assert reply.body == m.SetToken(token, None)
        else:
            assert isinstance(reply, RequestError)
            assert "accessToken'" in reply.message


@pytest.mark.parametrize(("subscription", "valid"), params("subscription"))
def test_subscription(subscription: Any, valid: bool) -> None:
    for message in ({"subscription": subscription},
                    {"detail": {"subscription": subscription}}):
        reply = request({"type": "set-subscription", **message})
        if valid:
            assert isinstance(reply, m.Request), reply
            assert reply.body == m.SetSubscription(subscription["active"])
        else:
            assert isinstance(reply, RequestError)
            assert "subscription" in reply.message
    token = request({"type": "set-token", "accessToken": "ok", "subscription": subscription})
    assert isinstance(token, m.Request) == valid


@pytest.mark.parametrize(("detail", "valid"), params("tokenDetail"))
def test_token_detail(detail: Any, valid: bool) -> None:
    reply = request({"type": "set-token", "detail": detail})
    if valid:
        assert isinstance(reply, m.Request), reply
        sub = detail.get("subscription")
        assert reply.body == m.SetToken(detail["accessToken"], None if sub is None else
                                        sub["active"])
    else:
        assert isinstance(reply, RequestError)
        assert "'detail" in reply.message


@pytest.mark.parametrize(("detail", "valid"), params("subscriptionDetail"))
def test_subscription_detail(detail: Any, valid: bool) -> None:
    reply = request({"type": "set-subscription", "detail": detail})
    if valid:
        assert isinstance(reply, m.Request), reply
        assert reply.body == m.SetSubscription(detail["subscription"]["active"])
    else:
        assert isinstance(reply, RequestError)
        assert "'detail" in reply.message


def test_every_section_has_both_kinds() -> None:
    for section in ("url", "accessToken", "subscription", "tokenDetail",
                    "subscriptionDetail", "triggerDetail"):
        kinds = {case["valid"] for case in CASES[section]}
        assert kinds == {True, False}, section


NODE = shutil.which("node") or ("/usr/bin/node" if os.path.exists("/usr/bin/node") else None)


@pytest.mark.skipif(NODE is None, reason="Node.js is not installed")
@pytest.mark.skipif(os.environ.get("FLATTR_JSTEST_DONE") == "1",
                    reason="make test has just run the same node --test (make jstest)")
def test_the_extension_passes_the_same_cases() -> None:
    """``node --test`` over tests/js: the shared cases against lib/validate.js."""
    assert NODE is not None
    files = sorted(str(p) for p in (ROOT / "tests" / "js").glob("*.test.js"))
    assert files
    run = subprocess.run([NODE, "--test", *files], capture_output=True, text=True,
                         timeout=120, cwd=ROOT, check=False)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
