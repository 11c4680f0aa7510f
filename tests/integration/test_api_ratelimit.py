"""Per-client rate limits on /graphql (api.rate_limit): 429 with Retry-After and a coded GraphQL error; clients are
peers, or the forwarded address through trusted proxies only; loopback is exempt unless configured otherwise."""

from __future__ import annotations

import httpx
import pytest

from gqlapi.testing import ApiClient

Q = {"query": "{ _meta { chain } }"}


def _client(api: ApiClient, peer: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api.app, client=(peer, 40000)), base_url="http://api")


def _statuses(api: ApiClient, peer: str, n: int, **kw) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        async with _client(api, peer) as c:
            return [await c.post("/graphql", json=Q, **kw) for _ in range(n)]

    return api.loop.run_until_complete(go())


@pytest.fixture()
def limited(db_url):
    api = ApiClient(db_url, rate_limit="3/minute")
    yield api
    api.close()


def test_a_client_over_its_limit_gets_429_with_retry_after(limited):
    rs = _statuses(limited, "203.0.113.9", 5)
    assert [r.status_code for r in rs] == [200, 200, 200, 429, 429]
    r = rs[3]
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert r.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert "retry after" in r.json()["errors"][0]["message"]
    assert [r.status_code for r in _statuses(limited, "203.0.113.10", 3)] == [200, 200, 200]  # another client

    async def others() -> tuple[int, int, int]:
        async with _client(limited, "203.0.113.9") as c:
            get = await c.get("/graphql", params={"query": "{ _meta { chain } }"}, headers={"accept": "application/json"})
            health = await c.get("/health")
            metrics = await c.get("/metrics")
            return get.status_code, health.status_code, metrics.status_code

    assert limited.loop.run_until_complete(others()) == (429, 200, 200)  # GET /graphql counts; ops routes do not
    assert 'api_requests_total{status="429"}' in limited.get("/metrics").text


def test_loopback_is_exempt_by_default(limited):
    assert all(r.status_code == 200 for r in _statuses(limited, "127.0.0.1", 10))
    assert all(r.status_code == 200 for r in _statuses(limited, "::1", 10))


def test_forwarded_clients_count_only_through_trusted_proxies(db_url):
    api = ApiClient(db_url, rate_limit="2/minute", trusted_proxies=["10.0.0.0/8"])
    try:
        fwd = {"headers": {"x-forwarded-for": "198.51.100.7"}}
        assert [r.status_code for r in _statuses(api, "10.0.0.2", 3, **fwd)] == [200, 200, 429]
        other = {"headers": {"x-forwarded-for": "198.51.100.8"}}
        assert [r.status_code for r in _statuses(api, "10.0.0.3", 2, **other)] == [200, 200]
        # A client that is not a trusted proxy cannot pick its own identity with the header.
        spoof = {"headers": {"x-forwarded-for": "198.51.100.9"}}
        assert [r.status_code for r in _statuses(api, "203.0.113.9", 3, **spoof)] == [200, 200, 429]
        assert _statuses(api, "203.0.113.9", 1, headers={"x-forwarded-for": "198.51.100.10"})[0].status_code == 429
    finally:
        api.close()


def test_a_local_proxy_does_not_make_its_clients_exempt(db_url):
    """Behind a proxy on the same host every peer is loopback: with the proxy trusted, its clients are limited."""
    api = ApiClient(db_url, rate_limit="2/minute", trusted_proxies=["127.0.0.1"])
    try:
        fwd = {"headers": {"x-forwarded-for": "198.51.100.7"}}
        assert [r.status_code for r in _statuses(api, "127.0.0.1", 3, **fwd)] == [200, 200, 429]
    finally:
        api.close()


def test_no_limit_when_disabled(db_url):
    api = ApiClient(db_url, rate_limit=None)
    try:
        assert all(r.status_code == 200 for r in _statuses(api, "203.0.113.9", 30))
    finally:
        api.close()


@pytest.mark.parametrize("settings, message", [
    ({"rate_limit": "ten per minute"}, "not a rate limit"),
    ({"trusted_proxies": ["nope"]}, "not an IP address or CIDR"),
    ({"rate_limit_exempt": ["10.0.0.0/33"]}, "not an IP address or CIDR"),
])
def test_bad_settings_are_named(settings, message):
    from pydantic import ValidationError

    from core.config import ApiSettings

    with pytest.raises(ValidationError, match=message):
        ApiSettings(**settings)
