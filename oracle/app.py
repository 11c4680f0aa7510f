"""The oracle's HTTP side (Starlette): webhooks, IoT, settlements, verifications, intent status, ops routes.

Every write endpoint verifies, validates and only then records (event + intent in one transaction) before it
answers 2xx. Bad input gets a 4xx JSON `{"error", "message"}` and writes nothing. Request bodies never reach a
log line (they carry phone numbers and names), nor do request paths (the M-Pesa callback's holds its secret):
log lines name the route. Limits and credential checks: `oracle.ingress.auth`. The routes are built from the table
in `oracle.api.routes`, the bodies are validated and answered with the models of `oracle.api.models`: the same
sources the OpenAPI document (/openapi.json, /docs) is generated from.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import psycopg
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_fixed
from anyio import to_thread
from eth_utils import keccak
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.config import OracleSettings
from core.service import ops_routes
from oracle import outbox, payments, qr_orders, records
from oracle.api import docs
from oracle.api import models as m
from oracle.api.fields import parse, reply
from oracle.api.routes import ROUTES
from oracle.ingress import iot, mpesa, stripe_webhook
from oracle.ingress.auth import AuthFailure, Guard, RequestLimit, bearer_identity, bearer_token, identify, same_secret, too_many
from oracle.ingress.common import BadRequest, parse_json_object, read_body, uint

_ADOPT_WINDOW_S = 900  # how long after a push its callback may adopt it when the link was lost
log = logging.getLogger("carbonledger.oracle.app")
Handler = Callable[..., Awaitable[Response]]


def _errors(fn: Handler) -> Handler:
    """Wrap an ingress handler: refuse a client over its failure limit before anything is read, count failed
    authentications, and turn every error into a JSON 4xx/5xx (logged by route name, never by path)."""
    route = fn.__name__

    @functools.wraps(fn)
    async def wrapped(self: Any, request: Request) -> Response:
        client = self.guard.client(request.scope)
        wait = self.guard.failures.blocked(client)
        if wait is not None:
            return too_many(wait)
        try:
            return await fn(self, request)
        except AuthFailure as err:
            self.guard.failed(client, route, err)
            return err.response()
        except BadRequest as err:
            return err.response()
        except psycopg.OperationalError:
            log.warning("database unavailable", extra={"route": route})
            return JSONResponse({"error": "unavailable", "message": "database unavailable, retry"}, status_code=503)
        except psycopg.DataError as exc:  # a value Postgres cannot store (e.g. a NUL in text): the input's fault
            log.warning("input refused by the database", extra={"route": route, "error": type(exc).__name__})
            return JSONResponse({"error": "invalid_field", "message": "a value cannot be stored (e.g. a NUL character)"},
                                status_code=422)
        except Exception:  # noqa: BLE001 - a 500 the provider will retry; the body stays out of the log
            log.exception("ingress error", extra={"route": route})
            return JSONResponse({"error": "internal", "message": "internal error, retry"}, status_code=500)

    return wrapped


class OracleApp:
    """Holds what the endpoints need; `asgi()` builds the Starlette app."""

    def __init__(self, pool: Any, settings: OracleSettings, chain: str, *, sender: Any = None, registry: Any = None,
                 daraja: mpesa.Daraja | None = None) -> None:
        self.pool, self.s, self.chain, self.sender, self.registry = pool, settings, chain, sender, registry
        self.daraja = daraja
        self.stripe_secrets = [x.get_secret_value() for x in settings.stripe_webhook_secrets]
        self.callback_url = settings.mpesa_callback_url.get_secret_value() if settings.mpesa_callback_url else None
        self.guard = Guard(settings)

    async def _db(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await to_thread.run_sync(functools.partial(fn, *args))

    async def _link(self, provisional: str, merchant_id: str, checkout_id: str) -> None:
        """Save a pushed request's CheckoutRequestID, riding out a short database outage."""
        async for attempt in AsyncRetrying(stop=stop_after_attempt(3), wait=wait_fixed(0.2), reraise=True,
                                           retry=retry_if_exception_type(psycopg.OperationalError)):
            with attempt:
                await self._db(records.link_mpesa_request, self.pool, provisional, merchant_id, checkout_id)

    # ---- payments ------------------------------------------------------------------------------------------
    def _stripe_settle(self, event: outbox.Event, pi_id: str | None) -> payments.Outcome:
        """Re-fetch (when the event names a PaymentIntent) and decide, in one worker thread: a second hand-over to a
        thread and back cost a webhook another wait for the GIL and the event loop on a busy box."""
        claim = None
        if pi_id is not None:  # act on what Stripe's API says about the payment, not on the body
            event, claim = stripe_webhook.examine(event, pi_id, self.s)
        return payments.settle(self.pool, self.chain, event, claim, self.s)

    @_errors
    async def stripe(self, request: Request) -> Response:
        body = await read_body(request, self.s.max_body_bytes)
        event, pi_id = stripe_webhook.handle(body, request.headers.get("stripe-signature"), self.stripe_secrets,
                                             self.s.stripe_tolerance_s, self.s.stripe_future_skew_s)
        out = await self._db(self._stripe_settle, event, pi_id)
        return reply(m.StripeAck, {"received": True, "event": event.event_id, "intent": out.intent_key,
                                   "status": out.intent_status, "outcome": out.status, "flag": out.flag,
                                   "duplicate": out.duplicate})

    @_errors
    async def mpesa_callback(self, request: Request) -> Response:
        self._mpesa_source(request)
        cb = mpesa.parse_callback(parse_json_object(await read_body(request, self.s.max_body_bytes)))
        row, unlinked = await self._db(records.find_mpesa_request, self.pool, cb.checkout_request_id,
                                       cb.whole_kes if cb.result_code == 0 else None, _ADOPT_WINDOW_S)
        if row is None and not unlinked:
            raise BadRequest(404, "unknown_checkout", "no STK push with this CheckoutRequestID")
        if self.daraja is None:
            raise BadRequest(503, "not_configured", "Daraja API not configured")
        try:
            code = await self.daraja.stk_query(cb.checkout_request_id)
        except Exception as exc:  # noqa: BLE001 - Daraja down: refuse so Safaricom retries; reconciliation also asks
            log.warning("STK status query failed", extra={"error": type(exc).__name__})
            raise BadRequest(503, "daraja_unavailable", "could not confirm with Daraja, retry") from None
        if row is None:
            # A paid push we sent whose CheckoutRequestID was never saved (the database failed right after the
            # push): Daraja confirms it; the one unlinked push of this amount is it, else it waits for a human.
            mpesa.confirm(cb, code)
            row = await self._db(records.adopt_mpesa_request, self.pool, cb.checkout_request_id,
                                 cb.merchant_request_id, cb.whole_kes, _ADOPT_WINDOW_S)
            if row is None:
                out = await self._db(payments.settle, self.pool, self.chain, mpesa.unmatched(cb), None, self.s)
                return reply(m.MpesaAck, {"ResultCode": 0, "ResultDesc": "Accepted", "intent": None,
                                          "outcome": out.status, "flag": out.flag})
        event, claim, status = mpesa.decide(cb, row, code)
        out = await self._db(records.settle_mpesa, self.pool, self.chain, event, claim, status, cb, self.s)
        return reply(m.MpesaAck, {"ResultCode": 0, "ResultDesc": "Accepted", "intent": out.intent_key,
                                  "outcome": out.status, "flag": out.flag})

    def _mpesa_source(self, request: Request) -> None:
        """An allowlisted source (checked first: elsewhere nobody gets to try the secret), then the secret path."""
        if not mpesa.ip_allowed(self.guard.client(request.scope), self.s.mpesa_allowed_ips):
            raise AuthFailure(403, "forbidden", "source address not allowed")
        secret = self.s.mpesa_callback_secret
        if secret is None or not same_secret(request.path_params["secret"], secret.get_secret_value()):
            raise AuthFailure(404, "not_found", "not found")

    @_errors
    async def mpesa_push(self, request: Request) -> Response:
        merchant = bearer_identity(request, self.s.merchant_tokens)
        req = parse(m.StkPushRequest, parse_json_object(await read_body(request, self.s.max_body_bytes)))
        phone, amount, what = req.phone, req.amount, payments.Target.from_model(req.target)
        target = what.to_json()
        if self.daraja is None or not self.callback_url:
            raise BadRequest(503, "not_configured", "Daraja API or callback URL not configured")
        # Ask the payer only for what pays for the target (the callback is checked again against the push).
        await self._db(payments.quote, self.pool, self.chain, what, amount * 10**mpesa.DECIMALS, mpesa.CURRENCY,
                       mpesa.DECIMALS, self.s)
        # Recorded before the push: whatever fails after it, a push that went out is never unknown to us.
        provisional = await self._db(records.begin_mpesa_request, self.pool, amount, target, merchant)
        try:
            mid, cid = await self.daraja.stk_push(phone, amount, self.callback_url, merchant)
        except (httpx.HTTPStatusError, RuntimeError) as exc:  # Daraja answered and refused (bad phone, amount, ...)
            status = exc.response.status_code if isinstance(exc, httpx.HTTPStatusError) else None
            oauth = isinstance(exc, httpx.HTTPStatusError) and "/oauth/" in exc.request.url.path  # our credentials
            if oauth or status is None or 400 <= status < 500:  # definitely not pushed (a 5xx might have been)
                await self._db(records.refuse_mpesa_request, self.pool, provisional)
            if not oauth and (status is None or 400 <= status < 500):
                log.warning("STK push refused", extra={"error": type(exc).__name__, "status": status})
                raise BadRequest(422, "stk_push_refused", "Daraja refused the STK push (check phone and amount)") from None
            log.warning("STK push failed", extra={"error": type(exc).__name__, "status": status})
            raise BadRequest(503, "daraja_unavailable", "could not reach Daraja, retry") from None
        except httpx.HTTPError as exc:  # unreachable (nothing sent) or timed out (a push may hide behind it, so
            if isinstance(exc, httpx.ConnectError):  # the row stays 'initiating' for its callback to adopt)
                await self._db(records.refuse_mpesa_request, self.pool, provisional)
            log.warning("STK push failed", extra={"error": type(exc).__name__})
            raise BadRequest(503, "daraja_unavailable", "could not reach Daraja, retry") from None
        try:
            await self._link(provisional, mid, cid)
        except Exception as exc:  # noqa: BLE001 - the push is out: answer it; its callback adopts the request
            log.error("STK push sent but its CheckoutRequestID could not be saved; the callback will adopt it",
                      extra={"checkout": cid, "error": type(exc).__name__})
        return reply(m.StkPushAccepted, {"checkout_request_id": cid}, 202)

    # ---- IoT -------------------------------------------------------------------------------------------------
    @_errors
    async def iot_reading(self, request: Request) -> Response:
        body = await read_body(request, self.s.max_body_bytes)
        dev = request.headers.get("x-device-id", "")
        key = self.s.iot_device_keys.get(dev)
        iot.check_signature(body, request.headers.get("x-signature"), key.get_secret_value() if key else None)
        reading = iot.parse_reading(parse_json_object(body), int(time.time()), self.s.iot_max_skew_s, self.s.iot_max_age_s)
        if reading.device_id != dev:
            raise BadRequest(401, "unauthorized", "device_id does not match X-Device-Id")
        out = await self._db(records.store_reading, self.pool, reading)
        return reply(m.ReadingStored, out, 200 if out["duplicate"] else 201)

    @_errors
    async def iot_proof(self, request: Request) -> Response:
        rid = uint(request.path_params["id"], "id", bits=63)
        out = await self._db(records.reading_proof, self.pool, rid)
        if out is None:
            raise BadRequest(404, "not_found", "no such reading")
        return reply(m.ReadingProof, out)

    # ---- QR orders, settlements and verifications -----------------------------------------------------------
    @_errors
    async def qr_order(self, request: Request) -> Response:
        merchant = bearer_identity(request, self.s.merchant_tokens)
        parse(m.QrOrderRequest, parse_json_object(await read_body(request, self.s.max_body_bytes)))  # {}: see qr_orders
        payout = self.s.merchant_payout_addresses.get(merchant)
        if payout is None:
            raise BadRequest(403, "no_payout_address", "no payout address is configured for this merchant")
        out = await self._db(qr_orders.create_order, self.pool, self.chain, merchant, payout)
        return reply(m.QrOrderCreated, out, 201)

    @_errors
    async def settlement(self, request: Request) -> Response:
        merchant = bearer_identity(request, self.s.merchant_tokens)
        req = parse(m.SettlementRequest, parse_json_object(await read_body(request, self.s.max_body_bytes)))
        out = await self._db(qr_orders.request_settlement, self.pool, self.chain, req.order_hash, merchant, req.beneficiary)
        return reply(m.SettlementQueued, out, 202)

    @_errors
    async def verification(self, request: Request) -> Response:
        import rfc8785

        verifier = bearer_identity(request, self.s.verifier_tokens)
        req = parse(m.VerificationRequest, parse_json_object(await read_body(request, self.s.max_body_bytes)))
        vid, recipient, batch_id, amount, evidence = req.id, req.recipient, req.batch_id, req.amount, req.evidence
        try:
            canonical = rfc8785.dumps({"id": vid, "recipient": recipient.lower(), "batch_id": str(batch_id),
                                       "amount": str(amount), "evidence": evidence}).decode()
        except Exception:  # noqa: BLE001 - rfc8785 refuses non-interoperable numbers etc.
            raise BadRequest(422, "invalid_field", "evidence is not canonicalisable JSON") from None
        vhash = "0x" + keccak(text=canonical).hex()
        out = await self._db(records.create_verification, self.pool, vid, recipient, batch_id, amount, canonical, vhash, verifier)
        return reply(m.VerificationCreated, out, 200 if out["duplicate"] else 201)

    @_errors
    async def approve(self, request: Request) -> Response:
        verifier = bearer_identity(request, self.s.verifier_tokens)
        out = await self._db(records.approve_verification, self.pool, self.chain, request.path_params["id"], verifier,
                             self.s.verifier_max_approval_amount, self.s.verifier_max_daily_amount)
        return reply(m.ApprovalQueued, out, 202)

    @_errors
    async def intent(self, request: Request) -> Response:
        """Status only without a token; the full view (tx hashes, attempts, error) to whoever the intent is for
        (the merchant of its order or push, the requester and approver of its mint) and to operators."""
        token, key = bearer_token(request), request.path_params["key"]
        who = None if token is None else identify(token, self._identities())
        view = await self._db(outbox.intent_view, self.pool, key)
        if view is None:
            raise BadRequest(404, "not_found", "no intent with this key")
        if who is None:
            return reply(m.IntentSummary, view)
        if not who.startswith("operator:") and who not in await self._db(records.intent_owners, self.pool, self.chain, key):
            raise BadRequest(403, "forbidden", "this intent is not yours")
        return reply(m.IntentView, view)

    def _identities(self) -> dict[str, Any]:
        groups = {"merchant": self.s.merchant_tokens, "verifier": self.s.verifier_tokens, "operator": self.s.operator_tokens}
        return {f"{kind}:{name}": token for kind, tokens in groups.items() for name, token in tokens.items()}

    # ---- ops -------------------------------------------------------------------------------------------------
    def ready(self) -> tuple[bool, dict]:
        try:
            with self.pool.connection() as conn:
                conn.execute("SELECT 1")
        except Exception:  # noqa: BLE001
            return False, {"database": "down"}
        detail: dict[str, Any] = {"database": "ok"}
        if self.sender is not None:
            detail["nonce_owner"] = self.sender.status().nonce_owner
        return True, detail

    def health(self) -> tuple[bool, dict]:
        if self.sender is None:
            return True, {}
        age = time.monotonic() - self.sender.status().last_round
        return age < 60, {"sender_round_age_s": round(age, 1)}

    def asgi(self) -> Starlette:
        # The route table is the contract (oracle.api.routes): the OpenAPI document is generated from it too.
        routes = [Route(op.path, getattr(self, op.id), methods=[op.method]) for op in ROUTES if op.served == "app"]
        routes += ops_routes(self.ready, self.registry, self.health)
        routes += docs.routes({op.id: op.path for op in ROUTES if op.served == "docs"})
        app = Starlette(routes=routes, middleware=[Middleware(RequestLimit, guard=self.guard)],
                        exception_handlers={HTTPException: _http_error})
        app.router.redirect_slashes = False  # a redirect would echo the (secret) path back: a plain 404 instead
        return app


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, wrong method) in the same JSON shape as ours."""
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
    return JSONResponse({"error": code, "message": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

