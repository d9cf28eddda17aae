"""Choosing the proxy from HTTPS_PROXY / NO_PROXY: a pure function of the environment."""

from __future__ import annotations

import pytest

from flattr_host.core.errors import ConfigError
from flattr_host.delivery.api import ApiClient
from flattr_host.delivery.proxy import Proxy, bypassed, parse_proxy, proxy_for

API = ("https", "api.flattr.com", None)


def test_no_variable_means_direct() -> None:
    assert proxy_for(*API, {}) is None


@pytest.mark.parametrize(("env", "expected"), [
    ({"HTTPS_PROXY": "http://proxy.corp:3128"}, ("proxy.corp", 3128, "HTTPS_PROXY")),
    ({"https_proxy": "proxy.corp:8080"}, ("proxy.corp", 8080, "https_proxy")),
    ({"https_proxy": "http://a:1", "HTTPS_PROXY": "http://b:2"}, ("a", 1, "https_proxy")),
    ({"HTTPS_PROXY": "proxy.corp"}, ("proxy.corp", 80, "HTTPS_PROXY")),
    ({"ALL_PROXY": "http://all:9"}, ("all", 9, "ALL_PROXY")),
    ({"HTTP_PROXY": "http://plain:1"}, None),  # http_proxy is for http URLs only
])
def test_https_proxy_variables(env: dict[str, str], expected: tuple[str, int, str] | None) -> None:
    got = proxy_for(*API, env)
    assert (None if got is None else (got.host, got.port, got.source)) == expected


def test_http_urls_use_http_proxy_but_not_in_cgi() -> None:
    env = {"HTTP_PROXY": "http://plain:1"}
    assert proxy_for("http", "127.0.0.1", 8080, env) == Proxy("plain", 1, None, "HTTP_PROXY")
    # A CGI script gets the client's Proxy: header as HTTP_PROXY (httpoxy).
    assert proxy_for("http", "x", None, {**env, "REQUEST_METHOD": "GET"}) is None


def test_credentials_become_a_basic_header_and_are_never_shown() -> None:
    proxy = parse_proxy("http://us%40er:p%3Ass@proxy:3128", "HTTPS_PROXY")
    assert proxy.authorization == "Basic dXNAZXI6cDpzcw=="  # base64("us@er:p:ss")
    assert "p:ss" not in proxy.describe() and "us@er" not in proxy.describe()
    assert proxy.describe() == "http://(with credentials) proxy:3128 (from HTTPS_PROXY)"


@pytest.mark.parametrize("value", ["https://proxy:443", "socks5://proxy:1080", "http://:80",
                                   "http://proxy:99999"])
def test_unusable_proxy_values_are_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="HTTPS_PROXY"):
        parse_proxy(value, "HTTPS_PROXY")


@pytest.mark.parametrize(("no_proxy", "host", "port", "bypass"), [
    ("*", "api.flattr.com", None, True),
    ("flattr.com", "api.flattr.com", None, True),
    (".flattr.com", "api.flattr.com", None, True),
    ("*.flattr.com", "api.flattr.com", None, True),
    ("api.flattr.com", "api.flattr.com", None, True),
    ("API.Flattr.com.", "api.flattr.com", None, True),
    ("flattr.co", "api.flattr.com", None, False),
    ("attr.com", "api.flattr.com", None, False),
    ("example.org, flattr.com", "api.flattr.com", None, True),
    ("example.org flattr.com", "api.flattr.com", None, True),
    ("flattr.com:443", "api.flattr.com", 443, True),
    ("flattr.com:8443", "api.flattr.com", 443, False),
    ("127.0.0.1", "127.0.0.1", 9000, True),
    ("127.0.0.0/8", "127.0.0.2", None, True),
    ("10.0.0.0/8", "127.0.0.1", None, False),
    ("::1", "::1", None, True),
    ("[::1]:9000", "::1", 9000, True),
    ("", "api.flattr.com", None, False),
    ("flattr.com:\u00b2", "api.flattr.com", 443, False),  # not a port: a name that never matches
    ("\u00b2", "api.flattr.com", None, False),
])
def test_no_proxy_matching(no_proxy: str, host: str, port: int | None, bypass: bool) -> None:
    assert bypassed(host, port, no_proxy) is bypass


def test_no_proxy_wins_over_https_proxy() -> None:
    env = {"HTTPS_PROXY": "http://p:1", "no_proxy": "flattr.com"}
    assert proxy_for(*API, env) is None
    assert proxy_for("https", "other.example", None, env) == Proxy("p", 1, None, "HTTPS_PROXY")


def test_api_client_reads_the_proxy_from_its_environment() -> None:
    client = ApiClient("https://api.flattr.com", None, 5, {"HTTPS_PROXY": "http://p:3128"})
    assert client.proxy == Proxy("p", 3128, None, "HTTPS_PROXY")
    assert ApiClient("https://api.flattr.com", None, 5, {}).proxy is None


def test_a_bad_proxy_value_is_a_network_error_not_a_crash() -> None:
    from flattr_host.delivery.api import NetworkError

    client = ApiClient("https://api.flattr.com", None, 5, {"HTTPS_PROXY": "socks5://p:1"})
    with pytest.raises(NetworkError, match="only http:// proxies"):
        client.post_bulk("token", ["https://a.example/"])


def test_errors_never_show_the_proxy_password() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_proxy("socks5://alice:hunter2@proxy:1080", "HTTPS_PROXY")
    assert "hunter2" not in str(caught.value) and "alice" not in str(caught.value)
    assert "socks5://***@proxy:1080" in str(caught.value)
    with pytest.raises(ConfigError) as bad_port:
        parse_proxy("http://alice:hunter2@proxy:99999", "HTTPS_PROXY")
    assert "hunter2" not in str(bad_port.value)
