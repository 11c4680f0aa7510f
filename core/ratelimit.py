"""Per-client rate limits for the HTTP front doors (the oracle's ingress and the GraphQL API).

Counting is the `limits` library's moving window (the same counters flask-limiter and slowapi use) in process
memory: a limit holds per API/oracle process, so N workers admit up to N times the figure (README says so). A
client is its peer address, or, when the peer is a configured trusted proxy, the right-most address in
X-Forwarded-For that is not itself a trusted proxy (a client cannot spoof its way past the limit by sending its
own X-Forwarded-For header through a proxy, because proxies append). Both front doors name their clients with
`client_from_scope`, so a client is the same address to the oracle's limits and to the API's.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def check_spec(spec: str | None) -> str | None:
    """Validate a limit such as "10/minute" or "600 per 1 minute" (None or "" = unlimited); ValueError names it."""
    if spec in (None, ""):
        return None
    try:
        parse(spec)
    except ValueError:
        raise ValueError(f"not a rate limit: {spec!r} (write e.g. '10/minute', '600/hour')") from None
    return spec


def proxy_networks(items: Iterable[str]) -> tuple[Network, ...]:
    """Parse trusted proxy addresses/CIDRs; ValueError names the bad one."""
    out = []
    for item in items:
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or CIDR: {item!r}") from None
    return tuple(out)


def _in(addr: str, nets: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(addr.strip())
    except ValueError:
        return False
    return any(ip in n for n in nets)


def client_address(peer: str | None, headers: Mapping[str, str] | None = None,
                   trusted_proxies: Sequence[Network] = ()) -> str:
    """The address a limit is counted against (see the module docstring)."""
    addr = peer or "unknown"
    if headers is None or not trusted_proxies or not _in(addr, trusted_proxies):
        return addr
    forwarded = headers.get("x-forwarded-for", "")
    for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
        if not _in(hop, trusted_proxies):
            return hop[:64]
    return addr


def client_from_scope(scope: Mapping[str, Any], trusted_proxies: Sequence[Network] = ()) -> str:
    """The client of an ASGI request (see the module docstring): its peer address, or, through a trusted proxy, the
    X-Forwarded-For address. Several X-Forwarded-For lines are one comma-separated list, in order (RFC 9110 5.3).
    Without trusted proxies no header is read (the API's hot path pays one tuple lookup)."""
    peer = scope.get("client")
    addr = peer[0] if peer else None
    if not trusted_proxies or addr is None or not _in(addr, trusted_proxies):
        return addr or "unknown"
    hops = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"x-forwarded-for"]
    return client_address(addr, {"x-forwarded-for": ",".join(hops)}, trusted_proxies)


class ClientLimit:
    """One limit ("20/minute") counted per client; `spec=None` admits everything."""

    def __init__(self, spec: str | None, name: str) -> None:
        self.name = name
        self.item: RateLimitItem | None = parse(spec) if spec else None
        self._limiter = MovingWindowRateLimiter(MemoryStorage()) if self.item is not None else None

    def _retry_after(self, client: str) -> float:
        assert self.item is not None and self._limiter is not None
        reset = self._limiter.get_window_stats(self.item, self.name, client).reset_time
        return max(1.0, math.ceil(reset - time.time()))

    def hit(self, client: str) -> float | None:
        """Count one request; None when admitted, else the seconds to wait (for Retry-After)."""
        if self._limiter is None:
            return None
        assert self.item is not None
        if self._limiter.hit(self.item, self.name, client):
            return None
        return self._retry_after(client)

    def blocked(self, client: str) -> float | None:
        """Without counting: None when the client may try again, else the seconds to wait."""
        if self._limiter is None:
            return None
        assert self.item is not None
        if self._limiter.test(self.item, self.name, client):
            return None
        return self._retry_after(client)


def in_networks(addr: str, nets: Sequence[Network]) -> bool:
    """True when `addr` is an IP address inside one of `nets`."""
    return _in(addr, nets)
