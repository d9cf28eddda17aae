"""Which HTTP(S) proxy a request to the API goes through: ``HTTPS_PROXY`` / ``NO_PROXY``.

The conventions curl, wget, requests and urllib share (docs/configuration.md):

- ``https_proxy`` / ``HTTPS_PROXY`` for https URLs, ``http_proxy`` / ``HTTP_PROXY``
  for http ones (the lower-case name wins; the upper-case ``HTTP_PROXY`` is ignored
  when ``REQUEST_METHOD`` is set, as CGI puts client headers there);
  ``all_proxy`` / ``ALL_PROXY`` for either.
- The value is ``[scheme://][user:password@]host[:port]``; the scheme must be
  ``http`` (an HTTP CONNECT proxy; the TLS session runs end to end through the
  tunnel, so the proxy never sees the token). No scheme means ``http``; the port
  defaults to 80 (``https://`` proxies, TLS to the proxy itself, are refused).
- ``no_proxy`` / ``NO_PROXY``: comma- or space-separated names; ``*`` matches
  everything; ``example.com`` and ``.example.com`` match the name and every
  subdomain; an entry may carry ``:port``; IP addresses and CIDR blocks
  (``10.0.0.0/8``) match addresses.

Pure: :func:`proxy_for` reads the mapping it is given. Nothing here touches the
network, so the host imports it only on the submitter thread, and tests need no
environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flattr_host.core.errors import ConfigError
from flattr_host.core.numbers import whole_number


@dataclass(frozen=True)
class Proxy:
    """An HTTP CONNECT proxy; ``authorization`` is the Proxy-Authorization value, if any."""

    host: str
    port: int
    authorization: str | None = None
    source: str = ""  # the variable it came from

    def describe(self) -> str:
        """For people (doctor): never the credentials."""
        auth = "(with credentials) " if self.authorization else ""
        return f"http://{auth}{self.host}:{self.port} (from {self.source})"


def _get(env: Mapping[str, str], name: str) -> tuple[str, str] | None:
    for var in (name.lower(), name.upper()):
        if var == "HTTP_PROXY" and env.get("REQUEST_METHOD"):
            continue
        value = env.get(var, "").strip()
        if value:
            return var, value
    return None


def redacted(value: str) -> str:
    """``value`` with any ``user:password@`` replaced (errors and logs never show it)."""
    scheme, sep, rest = value.rpartition("://")
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return f"{scheme}{sep}{rest}"


def parse_proxy(value: str, source: str) -> Proxy:
    """``[http://][user:password@]host[:port]`` -> :class:`Proxy`; ConfigError otherwise.

    Error messages show the value without its credentials.
    """
    from urllib.parse import unquote, urlsplit

    raw = value if "://" in value else f"http://{value}"
    shown = f"{source}={redacted(value)!r}"
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{shown} is not a proxy URL: {exc}") from None
    if parts.scheme.lower() != "http":
        raise ConfigError(f"{shown}: only http:// proxies (HTTP CONNECT) are "
                          f"supported, not {parts.scheme}://")
    if not parts.hostname:
        raise ConfigError(f"{shown} names no proxy host")
    authorization = None
    if parts.username is not None:
        import base64

        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        authorization = "Basic " + base64.b64encode(pair).decode("ascii")
    return Proxy(parts.hostname, port or 80, authorization, source)


def bypassed(host: str, port: int | None, no_proxy: str) -> bool:
    """True if ``host`` (``port``) matches an entry of a ``NO_PROXY`` value."""
    import ipaddress

    host = host.lower().rstrip(".").strip("[]")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = \
            ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in no_proxy.replace(" ", ",").split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        name, want_port = entry, None
        if entry.count(":") == 1 or (entry.startswith("[") and "]:" in entry):
            name, _, tail = entry.rpartition(":")
            want_port = whole_number(tail)
            if want_port is None:
                name = entry
        name = name.strip("[]").rstrip(".")
        if want_port is not None and port is not None and want_port != port:
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = name.lstrip("*").lstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def proxy_for(scheme: str, host: str, port: int | None, env: Mapping[str, str]) -> Proxy | None:
    """The proxy for ``scheme://host:port`` under ``env``, None for a direct connection."""
    no_proxy = _get(env, "no_proxy")
    if no_proxy is not None and bypassed(host, port, no_proxy[1]):
        return None
    found = _get(env, f"{scheme}_proxy") or _get(env, "all_proxy")
    if found is None:
        return None
    return parse_proxy(found[1], found[0])
