"""Per-client limits: counted per client, Retry-After given, proxies trusted only when configured."""

from __future__ import annotations

import pytest

from core.ratelimit import ClientLimit, check_spec, client_address, client_from_scope, proxy_networks


def test_limit_counts_per_client_and_says_how_long_to_wait():
    lim = ClientLimit("3/minute", "t")
    assert [lim.hit("a") for _ in range(3)] == [None, None, None]
    wait = lim.hit("a")
    assert wait is not None and 1 <= wait <= 60
    assert lim.blocked("a") is not None
    assert lim.hit("b") is None  # another client is not affected
    assert lim.blocked("b") is None


def test_blocked_does_not_count():
    lim = ClientLimit("2/minute", "t")
    for _ in range(10):
        assert lim.blocked("a") is None
    assert lim.hit("a") is None and lim.hit("a") is None and lim.hit("a") is not None


def test_no_spec_admits_everything():
    lim = ClientLimit(None, "t")
    assert all(lim.hit("a") is None for _ in range(1000))


@pytest.mark.parametrize("bad", ["ten per minute", "5/fortnight", "/minute"])
def test_bad_spec_is_named(bad):
    with pytest.raises(ValueError, match="not a rate limit"):
        check_spec(bad)
    assert check_spec("10/minute") == "10/minute" and check_spec("") is None


def test_forwarded_for_only_through_trusted_proxies():
    nets = proxy_networks(["10.0.0.0/8"])
    spoof = {"x-forwarded-for": "1.2.3.4"}
    assert client_address("203.0.113.9", spoof, nets) == "203.0.113.9"  # not a proxy: header ignored
    assert client_address("10.0.0.2", {"x-forwarded-for": "1.2.3.4, 198.51.100.7"}, nets) == "198.51.100.7"
    assert client_address("10.0.0.2", {"x-forwarded-for": "198.51.100.7, 10.0.0.3"}, nets) == "198.51.100.7"
    assert client_address("10.0.0.2", {}, nets) == "10.0.0.2"
    with pytest.raises(ValueError, match="not an IP"):
        proxy_networks(["nope"])


def test_client_from_scope_reads_forwarded_for_only_from_trusted_proxies():
    """One reading of an ASGI request's client for both front doors (the oracle's ingress and the API)."""
    nets = proxy_networks(["10.0.0.0/8"])

    def scope(peer, *forwarded: str) -> dict:
        return {"client": peer, "headers": [(b"x-forwarded-for", f.encode()) for f in forwarded]}

    assert client_from_scope(scope(("203.0.113.9", 1), "1.2.3.4"), nets) == "203.0.113.9"
    assert client_from_scope(scope(("10.0.0.2", 1), "1.2.3.4"), ()) == "10.0.0.2"  # no trusted proxies: header unread
    # several header lines are one list, in order; trusted hops are skipped from the right
    assert client_from_scope(scope(("10.0.0.2", 1), "198.51.100.7", "10.0.0.3"), nets) == "198.51.100.7"
    assert client_from_scope(scope(("10.0.0.2", 1), "1.2.3.4,198.51.100.7"), nets) == "198.51.100.7"
    assert client_from_scope(scope(("10.0.0.2", 1)), nets) == "10.0.0.2"
    assert client_from_scope(scope(None, "1.2.3.4"), nets) == "unknown"
    assert client_from_scope({"client": ("10.0.0.2", 1)}, nets) == "10.0.0.2"  # no headers key at all
