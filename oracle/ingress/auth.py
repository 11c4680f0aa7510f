"""Who is calling: credential checks that never raise on odd input, and per-client rate limits.

Every comparison with a secret goes through `same_secret`, which works on bytes: `hmac.compare_digest` raises
TypeError on non-ASCII *str* arguments, and header values arrive as any bytes (Starlette decodes them as
latin-1), so a str comparison turned a stray byte into a 500. A failed check raises `AuthFailure`, which the
route wrapper counts against the client's failure limit.

Limits (`core.ratelimit`, per client, in process memory): a general request limit on every route
(webhooks have their own, larger budget: providers deliver in bursts), checked by `RequestLimit` before routing;
and a failure limit: a client that failed authentication too often gets 429 on every authenticated route, before
its credential is looked at, until the window moves on. A client is its peer address, or the address the
configured trusted proxies name in X-Forwarded-For, so an attacker elsewhere cannot use up a provider's budget.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import JSONResponse

from core.ratelimit import ClientLimit, client_from_scope, proxy_networks
from oracle.ingress.common import BadRequest

log = logging.getLogger("carbonledger.oracle.auth")
WEBHOOK_PREFIX = "/webhooks/"


class AuthFailure(BadRequest):
    """A credential was missing or wrong (counted by the failure limit); otherwise a BadRequest."""


def _bytes(v: str | bytes) -> bytes:
    return v if isinstance(v, bytes) else v.encode("utf-8", "surrogatepass")


def same_secret(given: str | bytes | None, expected: str | bytes) -> bool:
    """Constant-time equality of a presented credential and the expected one; any input, never raises."""
    if given is None:
        return False
    return hmac.compare_digest(_bytes(given), _bytes(expected))


def bearer_token(request: Request) -> str | None:
    """The presented bearer token; None when there is no Authorization header; AuthFailure when it is malformed."""
    auth = request.headers.get("authorization")
    if auth is None:
        return None
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthFailure(401, "unauthorized", "missing bearer token")
    return token


def identify(token: str | None, tokens: Mapping[str, SecretStr]) -> str:
    """Name of the holder of `token` (every entry compared, constant time each); AuthFailure(401) otherwise."""
    if token is None:
        raise AuthFailure(401, "unauthorized", "missing bearer token")
    found = None
    for name, secret in tokens.items():
        if same_secret(token, secret.get_secret_value()):
            found = name
    if found is None:
        raise AuthFailure(401, "unauthorized", "unknown bearer token")
    return found


def bearer_identity(request: Request, tokens: Mapping[str, SecretStr]) -> str:
    """Name of the holder of the presented bearer token; 401 otherwise."""
    return identify(bearer_token(request), tokens)


def too_many(wait: float) -> JSONResponse:
    return JSONResponse({"error": "rate_limited", "message": "too many requests, retry later"}, status_code=429,
                        headers={"retry-after": str(int(wait))})


class Guard:
    """The oracle's per-client limits and client addressing, built once per app from the settings."""

    def __init__(self, settings: Any) -> None:
        self.proxies = proxy_networks(settings.trusted_proxies)
        self.requests = ClientLimit(settings.rate_limit, "oracle-requests")
        self.webhooks = ClientLimit(settings.webhook_rate_limit, "oracle-webhooks")
        self.failures = ClientLimit(settings.auth_failure_limit, "oracle-auth-failures")

    def client(self, scope: Any) -> str:
        return client_from_scope(scope, self.proxies)

    def failed(self, client: str, route: str, err: BadRequest) -> None:
        """Count one failed authentication (and say so in the log: route name, client, code; never the credential)."""
        self.failures.hit(client)
        log.info("authentication failed", extra={"route": route, "client": client, "status": err.status, "error": err.code})


class RequestLimit:
    """ASGI middleware: the general per-client request limit, before routing (so unknown paths count too)."""

    def __init__(self, app: Any, guard: Guard) -> None:
        self.app, self.guard = app, guard

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            limit = self.guard.webhooks if scope.get("path", "").startswith(WEBHOOK_PREFIX) else self.guard.requests
            wait = limit.hit(self.guard.client(scope))
            if wait is not None:
                await too_many(wait)(scope, receive, send)
                return
        await self.app(scope, receive, send)
