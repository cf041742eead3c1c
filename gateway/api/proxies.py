"""Behind a TLS-terminating reverse proxy: whether a request reached the proxy over HTTPS.

The proxy says so in ``X-Forwarded-Proto: https`` or ``Forwarded: proto=https`` (RFC 7239),
but anyone can send those headers, so they are believed only from the peers in ``[api]
trusted_proxies`` (the way Django's ``SECURE_PROXY_SSL_HEADER`` and Grafana's proxy settings
are meant to be used: only behind a proxy that sets them). The session cookie is ``Secure``
when the request is HTTPS by this test (``cookie_secure = "auto"``), or always / never.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

__all__ = ["TrustedProxies", "forwarded_proto", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(items: Iterable[str]) -> list[Network]:
    """``["127.0.0.1/32", "10.0.0.0/8", "::1"]`` → networks (a bare address is one host).

    Raises:
        ValueError: an item is not an address or network (the message names it).
    """
    out: list[Network] = []
    for i, s in enumerate(items):
        try:
            out.append(ipaddress.ip_network(str(s).strip(), strict=False))
        except ValueError:
            raise ValueError(f"item {i + 1} ({s!r}) is not an IP address or network like 10.0.0.0/8") from None
    return out


def forwarded_proto(headers: Mapping[str, str]) -> str:
    """The scheme the client used as the nearest proxy reports it: the first ``proto=`` of
    ``Forwarded``, else the first value of ``X-Forwarded-Proto``; ``""`` when neither says."""
    fwd = headers.get("forwarded", "")
    if fwd:
        first = fwd.split(",")[0]
        for pair in first.split(";"):
            k, _, v = pair.strip().partition("=")
            if k.strip().lower() == "proto":
                return v.strip().strip('"').lower()
    xfp = headers.get("x-forwarded-proto", "")
    return xfp.split(",")[0].strip().lower() if xfp else ""


class TrustedProxies:
    """The ``[api] trusted_proxies`` networks and the test for an HTTPS request."""

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self.networks = parse_networks(networks)

    def trusts(self, peer: str | None) -> bool:
        if not peer or not self.networks:
            return False
        try:
            addr = ipaddress.ip_address(peer)
        except ValueError:
            return False  # a Unix socket peer or a name: not an address we list
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in n for n in self.networks)

    def is_https(self, scheme: str, peer: str | None, headers: Mapping[str, str]) -> bool:
        """HTTPS to us directly, or to a trusted proxy that says so; a forwarded header from
        any other peer is ignored."""
        if scheme == "https":
            return True
        return self.trusts(peer) and forwarded_proto(headers) == "https"
