"""The host behind an HTTPS proxy: ``HTTPS_PROXY`` and ``NO_PROXY`` (docs/configuration.md).

A real host process delivers a flattr to ``https://api.flattr.com`` through a real
CONNECT proxy process on loopback (tests/support/connect_proxy.py), which maps the
name to the fake API. The TLS session runs end to end inside the tunnel: the proxy
sees the CONNECT line and ciphertext, never the token or the URLs.
"""

from __future__ import annotations

import io
from argparse import Namespace
from collections.abc import Iterator

import pytest

from flattr_host.tools import doctor
from flattr_host.tools import install as inst
from tests.integration.conftest import Delivery, drained
from tests.support.connect_proxy import ConnectProxy, flattr_map

URL = "https://blog.example/behind-a-proxy"


@pytest.fixture
def proxy(delivery: Delivery) -> Iterator[ConnectProxy]:
    site_port = int(delivery.site.site.rsplit(":", 1)[1].split("/")[0])
    api_port = int(delivery.site.api.rsplit(":", 1)[1].split("/")[0])
    with ConnectProxy(flattr_map(site_port, api_port)) as running:
        yield running


def test_bulk_request_goes_through_the_proxy_and_the_token_stays_inside_tls(
        delivery: Delivery, proxy: ConnectProxy) -> None:
    since = len(delivery.bulk_requests())
    host = delivery.start(FLATTR_API_BASE="https://api.flattr.com",
                          HTTPS_PROXY=f"http://user:secret@127.0.0.1:{proxy.port}",
                          NO_PROXY="localhost,.internal.example")
    assert host.request("flattr", urls=[URL])["result"] == {"queued": 1}
    host.wait_event(drained(1), timeout=30)
    assert delivery.sent_urls(since) == [URL]
    [entry] = delivery.bulk_requests(since)
    assert entry["headers"].get("Authorization", entry["headers"].get("authorization")) == \
        f"Bearer {delivery.token}"
    assert [(r.authority, r.status) for r in proxy.records] == [("api.flattr.com:443", 200)]
    # What the proxy saw: the CONNECT head with our credentials, then TLS records only.
    [head] = proxy.heads
    assert head.startswith(b"CONNECT api.flattr.com:443 HTTP/1.")
    assert b"Proxy-Authorization: Basic dXNlcjpzZWNyZXQ=" in head
    tunnel = proxy.client_bytes
    assert tunnel[:1] == b"\x16"  # a TLS handshake record starts the tunnel
    for secret in (delivery.token.encode(), b"Bearer", URL.encode(), b"/rest/v2/flattr/bulk"):
        assert secret not in tunnel and secret not in head


def test_no_proxy_match_connects_directly(delivery: Delivery, proxy: ConnectProxy) -> None:
    since = len(delivery.bulk_requests())
    host = delivery.start(HTTPS_PROXY=f"http://127.0.0.1:{proxy.port}",
                          NO_PROXY="example.org, 127.0.0.0/8")
    assert host.request("flattr", urls=[URL])["result"] == {"queued": 1}
    host.wait_event(drained(1), timeout=30)
    assert delivery.sent_urls(since) == [URL]
    assert proxy.records == []


def test_doctor_says_which_proxy_it_used(delivery: Delivery, proxy: ConnectProxy) -> None:
    env = {"HTTPS_PROXY": f"127.0.0.1:{proxy.port}"}
    check = doctor.check_api("https://api.flattr.com", delivery.site.ca, 10, env)
    assert check.ok, check.detail
    assert f"via proxy http://127.0.0.1:{proxy.port} (from HTTPS_PROXY)" in check.detail
    assert [r.status for r in proxy.records] == [200]
    direct = doctor.check_api(delivery.site.api, delivery.site.ca, 10,
                              {**env, "NO_PROXY": "127.0.0.1"})
    assert direct.ok and "direct" in direct.detail
    refused = doctor.check_api("https://unmapped.example", delivery.site.ca, 10, env)
    assert not refused.ok and "via proxy" in refused.detail and "403" in refused.detail


def test_doctor_report_names_the_proxy(delivery: Delivery, proxy: ConnectProxy,
                                       tmp_path: object) -> None:
    plat = inst.current_platform()
    options = Namespace(browser="chromium", scope="user", user_data_dir=delivery.launcher.parent
                        .parent, home=None, extension_ids=None, timeout=20.0, skip_api=False,
                        manifest_dir=None, family=None)
    environ = {**delivery.env(FLATTR_API_BASE="https://api.flattr.com"),
               "FLATTR_HOST_HOME": str(delivery.home),
               "HTTPS_PROXY": f"http://127.0.0.1:{proxy.port}", "PATH": "/usr/bin:/bin"}
    out = io.StringIO()
    doctor.run(options, plat, environ, out)
    assert f"API reachable: HTTP 200 from https://api.flattr.com/rest/v2/rate_limit via proxy " \
           f"http://127.0.0.1:{proxy.port}" in out.getvalue()
