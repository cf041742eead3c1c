"""Forwarded-scheme headers are believed from trusted proxies only (pure)."""

from __future__ import annotations

import pytest

from gateway.api.proxies import TrustedProxies, forwarded_proto, parse_networks


def test_the_forwarded_scheme_is_read_from_either_header() -> None:
    assert forwarded_proto({"x-forwarded-proto": "https"}) == "https"
    assert forwarded_proto({"x-forwarded-proto": "HTTPS, http"}) == "https"  # the nearest proxy's first
    assert forwarded_proto({"forwarded": 'for=192.0.2.60;proto=https;by=203.0.113.43'}) == "https"
    assert forwarded_proto({"forwarded": 'proto="http", proto=https', "x-forwarded-proto": "https"}) == "http"
    assert forwarded_proto({}) == ""


def test_only_a_trusted_peer_makes_a_request_https() -> None:
    p = TrustedProxies(["127.0.0.1/32", "10.0.0.0/8", "::1"])
    h = {"x-forwarded-proto": "https"}
    assert p.is_https("http", "127.0.0.1", h) and p.is_https("http", "10.20.30.40", h) and p.is_https("http", "::1", h)
    assert p.is_https("http", "::ffff:10.1.2.3", h)  # an IPv4 peer on a dual-stack socket
    assert not p.is_https("http", "192.0.2.7", h)  # anyone else's header is ignored
    assert not p.is_https("http", "127.0.0.1", {})
    assert not p.is_https("http", None, h) and not p.is_https("http", "unix-socket", h)
    assert TrustedProxies().is_https("https", "192.0.2.7", {})  # HTTPS to us directly
    assert not TrustedProxies().is_https("http", "127.0.0.1", h)  # no proxies trusted: no header believed


def test_a_bad_network_is_named() -> None:
    with pytest.raises(ValueError, match=r"item 2 \('10.0.0.300/8'\)"):
        parse_networks(["10.0.0.0/8", "10.0.0.300/8"])
