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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flattr_host.core.errors import RequestError
from flattr_host.protocol import messages as m
from flattr_host.protocol import urls

ROOT = Path(__file__).resolve().parents[2]
CASES = json.loads((ROOT / "tests" / "data" / "protocol_cases.json").read_text("utf-8"))
NODE = shutil.which("node") or ("/usr/bin/node" if os.path.exists("/usr/bin/node") else None)


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


def accepts(check: Callable[[Any, str], object], value: Any) -> bool:
    """True when ``check`` passes ``value``, False when it refuses it (FieldError)."""
    try:
        check(value, "u")
    except m.FieldError:
        return False
    return True


def rules_verdict(url: str) -> bool:
    return accepts(urls.check_url_rules, url)


@pytest.mark.parametrize(("url", "valid"), params("url"))
def test_url_shortcut_agrees_with_the_rules(url: Any, valid: bool) -> None:
    """check_url accepts the common shape in one regex scan; that scan may accept
    only what the rule-by-rule path accepts."""
    if not isinstance(url, str) or len(url.encode("utf-8", "surrogatepass")) > m.MAX_URL_BYTES:
        return
    assert rules_verdict(url) == valid
    if urls._PLAIN_URL.fullmatch(url):
        assert valid


@pytest.mark.parametrize(("url", "valid"), params("url"))
def test_url_in_a_list_is_judged_alone_and_named_by_its_index(url: Any, valid: bool) -> None:
    """A list is checked in one scan when every item has the common shape; any item
    gets the verdict (and the field name) it gets alone."""
    good = "https://a.example/x"
    for items, index in (([good, url, good], 1), ([url], 0), ([good] * 5 + [url], 5)):
        reply = request({"type": "flattr", "urls": items})
        if valid:
            assert isinstance(reply, m.Request), reply
            assert reply.body == m.FlattrUrls(tuple(items))
        else:
            assert isinstance(reply, RequestError)
            assert f"'urls[{index}]'" in reply.message


URL_PIECES = st.sampled_from(["http", "https", "HTTP", "://", ":", "/", "//", "?", "#", "@",
                              ".", "..", "-", "_", "a", "Z", "9", "0", "1.2.3.4", "256",
                              "[", "]", "::", "ffff", "65535", "65536", "080", " ", "\\",
                              "\t", "\x85", "\u00a0", "\ud800", "ü", "%", "xn--"])


@given(st.lists(URL_PIECES, max_size=14).map("".join))
def test_url_shortcut_never_accepts_what_the_rules_refuse(text: str) -> None:
    for url in (text, "http://" + text, "https://a.example" + text):
        if urls._PLAIN_URL.fullmatch(url):
            assert rules_verdict(url), url


@given(st.lists(st.lists(URL_PIECES, max_size=8).map(lambda p: "https://a.example/" + "".join(p)),
                min_size=1, max_size=6))
def test_a_list_is_accepted_exactly_when_every_item_is(items: list[str]) -> None:
    accepted = accepts(urls.check_urls, list(items))
    if accepted:
        assert urls.check_urls(list(items), "urls") == tuple(items)
    assert accepted == all(accepts(urls.check_url, url) for url in items)


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


def python_verdict(kind: str, value: Any) -> bool:
    message = {
        "url": lambda v: {"type": "flattr", "urls": [v]},
        "accessToken": lambda v: {"type": "set-token", "detail": {"accessToken": v}},
        "subscription": lambda v: {"type": "set-subscription", "detail": {"subscription": v}},
        "tokenDetail": lambda v: {"type": "set-token", "detail": v},
        "subscriptionDetail": lambda v: {"type": "set-subscription", "detail": v},
    }[kind](value)
    return isinstance(request(message), m.Request)


def generated_inputs(seed: int, count: int) -> dict[str, list[Any]]:
    """Random inputs built from the pieces the rules turn on (seeded: reproducible)."""
    import random

    rng = random.Random(seed)
    url_pieces = ["http", "https", "HTTPS", "ftp", "://", ":", "/", "//", "?", "#", "@", ".",
                  "-", "_", "a", "Z", "9", "0", "1.2.3.4", "256", "01", "[", "]", "::",
                  "ffff", "1:2", "65535", "65536", "0", " ", "\\", "\t", "\n", "\x00",
                  "\x7f", "\x85", "\xa0", "\u2028", "\u3000", "\ufeff", "\u200b",
                  "\ud800", "\udc00", "\U0001F600", "ü", "%", "%2e", "xn--", "<", "example"]
    token_pieces = ["a", "Z", "~", "!", "-", ".", " ", "\t", "ü", "\x7f", "\ud800", "\U0001F600"]
    subs: list[Any] = [True, False, None, 0, 1, "true", [], {}]

    # A URL of five parts, each drawn from good or bad variants: about half are valid,
    # and each bad variant appears beside otherwise valid parts.
    good = {"scheme": ["https", "http", "HtTp", "HTTPS"], "slashes": ["://"],
            "user": [""],
            "host": ["a.example", "A.EXAMPLE", "localhost", "a_b.c", "-a", "xn--bcher-kva.example",
                     "1.2.3.4", "255.255.255.255", "1.2.3.4a", "[::1]", "[::]", "[2001:db8::1]",
                     "[::ffff:1.2.3.4]", "[1:2:3:4:5:6:7:8]", "[FE80::1]"],
            "port": ["", ":1", ":80", ":08080", ":65535"],
            "rest": ["", "/", "/x", "?q=1", "#f", "/ü", "/%zz", "/a@b", "/<>", "/\U0001F600",
                     "#a#b", "/\u200b"]}
    bad = {"scheme": ["ftp", "httpx", "", "javascript"], "slashes": [":/", ":", ":\\\\", ":///"],
           "user": ["u@", "u:p@", "@", "a.example@"],
           "host": ["256.1.1.1", "01.2.3.4", "1.2.3", "a.b.123", "123", "[1:2:3:4:5:6:7]",
                    "[1::2::3]", "[fe80::1%25x]", "[::1", "::1", "", "a..b", ".a", "a.",
                    "bücher.example", "a b", "a%2eb", "a\\b", "[1.2.3.4::]"],
           "port": [":65536", ":0", ":", ":x", ":1:2", ":-1"],
           "rest": ["/a b", "/\\x", "/\t", "/\x85", "/\xa0", "/\u2028", "/\ufeff", "/\ud800",
                    "/\udc00x", " ", "\n"]}

    def url() -> str:
        if rng.random() < 0.15:
            head = rng.choice(["https://", "http://", "", "HTTP://", "https:", "https:/"])
            return head + "".join(rng.choice(url_pieces) for _ in range(rng.randint(0, 8)))
        broken = rng.choice(list(good)) if rng.random() < 0.5 else None
        return "".join(rng.choice((bad if part == broken else good)[part]) for part in good)

    def token() -> Any:
        if rng.random() < 0.1:
            return rng.choice([None, 5, True, [], {}])
        return "".join(rng.choice(token_pieces) for _ in range(rng.randint(0, 6)))

    def subscription() -> Any:
        roll = rng.random()
        if roll < 0.15:
            return rng.choice(subs)
        sub: dict[str, Any] = {} if roll < 0.2 else {"active": rng.choice(subs)}
        if rng.random() < 0.15:
            sub[rng.choice(["plan", "Active", "__proto__"])] = True
        return sub

    def token_detail() -> Any:
        if rng.random() < 0.1:
            return rng.choice(subs)
        detail: dict[str, Any] = {}
        if rng.random() < 0.9:
            detail["accessToken"] = token()
        if rng.random() < 0.5:
            detail["subscription"] = subscription()
        if rng.random() < 0.1:
            detail[rng.choice(["admin", "detail", "__proto__"])] = 1
        return detail

    def subscription_detail() -> Any:
        if rng.random() < 0.1:
            return rng.choice(subs)
        detail: dict[str, Any] = {} if rng.random() < 0.1 else {"subscription": subscription()}
        if rng.random() < 0.1:
            detail[rng.choice(["accessToken", "active"])] = True
        return detail

    return {"url": [url() for _ in range(count)],
            "accessToken": [token() for _ in range(count // 4)],
            "subscription": [subscription() for _ in range(count // 8)],
            "tokenDetail": [token_detail() for _ in range(count // 4)],
            "subscriptionDetail": [subscription_detail() for _ in range(count // 8)]}


@pytest.mark.skipif(NODE is None, reason="Node.js is not installed")
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_both_implementations_agree_on_generated_inputs(seed: int) -> None:
    """Differential check: thousands of generated inputs, one verdict each from
    messages.py and validate.js; every disagreement is listed."""
    assert NODE is not None
    inputs = generated_inputs(seed, 4000)
    run = subprocess.run([NODE, str(ROOT / "tests" / "js" / "verdicts.js")],
                         input=json.dumps(inputs), capture_output=True, text=True,
                         timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    js = json.loads(run.stdout)
    differ = [(kind, value, verdict) for kind, values in inputs.items()
              for value, verdict in zip(values, js[kind], strict=True)
              if python_verdict(kind, value) != verdict]
    assert differ == [], differ[:20]
    valid_urls = sum(js["url"])
    assert 0 < valid_urls < len(js["url"])  # the generator reaches both sides


def test_every_section_has_both_kinds() -> None:
    for section in ("url", "accessToken", "subscription", "tokenDetail",
                    "subscriptionDetail", "triggerDetail"):
        kinds = {case["valid"] for case in CASES[section]}
        assert kinds == {True, False}, section


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
