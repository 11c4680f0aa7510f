"""The oracle's HTTP side (Starlette): webhooks, IoT, settlements, verifications, intent status, ops routes.

Every write endpoint verifies, validates and only then records (event + intent in one transaction) before it
answers 2xx. Bad input gets a 4xx JSON `{"error", "message"}` and writes nothing. Request bodies never reach a
log line (they carry phone numbers and names).
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
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from carbonledger.config import OracleSettings
from carbonledger.service import ops_routes
from oracle import outbox, payments, records
from oracle.ingress import iot, mpesa, stripe_webhook
from oracle.ingress.common import BadRequest, bearer_identity, is_address, is_bytes32, parse_json_object, read_body, uint
from oracle.outbox import Event, Intent

_ADOPT_WINDOW_S = 900  # how long after a push its callback may adopt it when the link was lost
log = logging.getLogger("carbonledger.oracle.app")
Handler = Callable[..., Awaitable[Response]]


def _errors(fn: Handler) -> Handler:
    @functools.wraps(fn)
    async def wrapped(self: Any, request: Request) -> Response:
        try:
            return await fn(self, request)
        except BadRequest as err:
            return err.response()
        except psycopg.OperationalError:
            log.warning("database unavailable", extra={"path": request.url.path})
            return JSONResponse({"error": "unavailable", "message": "database unavailable, retry"}, status_code=503)
        except psycopg.DataError as exc:  # a value Postgres cannot store (e.g. a NUL in text): the input's fault
            log.warning("input refused by the database", extra={"path": request.url.path, "error": type(exc).__name__})
            return JSONResponse({"error": "invalid_field", "message": "a value cannot be stored (e.g. a NUL character)"},
                                status_code=422)
        except Exception:  # noqa: BLE001 - a 500 the provider will retry; the body stays out of the log
            log.exception("ingress error", extra={"path": request.url.path})
            return JSONResponse({"error": "internal", "message": "internal error, retry"}, status_code=500)

    return wrapped


class OracleApp:
    """Holds what the endpoints need; `asgi()` builds the Starlette app."""

    def __init__(self, pool: Any, settings: OracleSettings, chain: str, *, sender: Any = None, registry: Any = None,
                 daraja: mpesa.Daraja | None = None) -> None:
        self.pool, self.s, self.chain, self.sender, self.registry = pool, settings, chain, sender, registry
        self.daraja = daraja
        self.stripe_secrets = [x.get_secret_value() for x in settings.stripe_webhook_secrets]

    async def _db(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await to_thread.run_sync(functools.partial(fn, *args))

    async def _link(self, provisional: str, merchant_id: str, checkout_id: str) -> None:
        """Save a pushed request's CheckoutRequestID, riding out a short database outage."""
        async for attempt in AsyncRetrying(stop=stop_after_attempt(3), wait=wait_fixed(0.2), reraise=True,
                                           retry=retry_if_exception_type(psycopg.OperationalError)):
            with attempt:
                await self._db(records.link_mpesa_request, self.pool, provisional, merchant_id, checkout_id)

    # ---- payments ------------------------------------------------------------------------------------------
    @_errors
    async def stripe(self, request: Request) -> Response:
        body = await read_body(request, self.s.max_body_bytes)
        event, pi_id = stripe_webhook.handle(body, request.headers.get("stripe-signature"), self.stripe_secrets,
                                             self.s.stripe_tolerance_s, self.s.stripe_future_skew_s)
        claim = None
        if pi_id is not None:  # act on what Stripe's API says about the payment, not on the body
            event, claim = await self._db(stripe_webhook.examine, event, pi_id, self.s)
        out = await self._db(payments.settle, self.pool, self.chain, event, claim, self.s)
        return JSONResponse({"received": True, "event": event.event_id, "intent": out.intent_key,
                             "status": out.intent_status, "outcome": out.status, "flag": out.flag,
                             "duplicate": out.duplicate})

    @_errors
    async def mpesa_callback(self, request: Request) -> Response:
        import hmac

        secret = self.s.mpesa_callback_secret
        given = request.path_params["secret"]
        if secret is None or not hmac.compare_digest(given.encode(), secret.get_secret_value().encode()):
            raise BadRequest(404, "not_found", "not found")
        if not mpesa.ip_allowed(request.client.host if request.client else None, self.s.mpesa_allowed_ips):
            raise BadRequest(403, "forbidden", "source address not allowed")
        cb = mpesa.parse_callback(parse_json_object(await read_body(request, self.s.max_body_bytes)))
        row = await self._db(records.mpesa_request, self.pool, cb.checkout_request_id)
        unlinked = row is None and cb.result_code == 0 and cb.whole_kes is not None \
            and await self._db(records.unlinked_mpesa_requests, self.pool, cb.whole_kes, _ADOPT_WINDOW_S)
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
            if code != cb.result_code:
                raise BadRequest(409, "callback_disputed", "Daraja's status query does not confirm this callback")
            row = await self._db(records.adopt_mpesa_request, self.pool, cb.checkout_request_id,
                                 cb.merchant_request_id, cb.whole_kes, _ADOPT_WINDOW_S)
            if row is None:
                out = await self._db(payments.settle, self.pool, self.chain, mpesa.unmatched(cb), None, self.s)
                return JSONResponse({"ResultCode": 0, "ResultDesc": "Accepted", "intent": None, "outcome": out.status})
        event, claim, status = mpesa.decide(cb, row, code)
        out = await self._db(records.settle_mpesa, self.pool, self.chain, event, claim, status, cb, self.s)
        return JSONResponse({"ResultCode": 0, "ResultDesc": "Accepted", "intent": out.intent_key,
                             "outcome": out.status, "flag": out.flag})

    @_errors
    async def mpesa_push(self, request: Request) -> Response:
        merchant = bearer_identity(request, self.s.merchant_tokens)
        data = parse_json_object(await read_body(request, self.s.max_body_bytes))
        phone, amount, target = data.get("phone"), uint(data.get("amount"), "amount", minimum=1, bits=32), data.get("target")
        if not isinstance(phone, str) or not phone.isdigit() or not 9 <= len(phone) <= 15:
            raise BadRequest(422, "invalid_field", "phone must be digits in international form")
        what = payments.Target.from_json(target)
        target = what.to_json()
        if self.daraja is None or not self.s.mpesa_callback_url:
            raise BadRequest(503, "not_configured", "Daraja API or callback URL not configured")
        # Ask the payer only for what pays for the target (the callback is checked again against the push).
        await self._db(payments.quote, self.pool, self.chain, what, amount * 10**mpesa.DECIMALS, mpesa.CURRENCY,
                       mpesa.DECIMALS, self.s)
        # Recorded before the push: whatever fails after it, a push that went out is never unknown to us.
        provisional = await self._db(records.begin_mpesa_request, self.pool, amount, target)
        try:
            mid, cid = await self.daraja.stk_push(phone, amount, self.s.mpesa_callback_url, merchant)
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
        return JSONResponse({"checkout_request_id": cid}, status_code=202)

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
        return JSONResponse(out, status_code=200 if out["duplicate"] else 201)

    @_errors
    async def iot_proof(self, request: Request) -> Response:
        rid = uint(request.path_params["rid"], "id", bits=63)
        out = await self._db(records.reading_proof, self.pool, rid)
        if out is None:
            raise BadRequest(404, "not_found", "no such reading")
        return JSONResponse(out)

    # ---- settlements and verifications --------------------------------------------------------------------
    @_errors
    async def settlement(self, request: Request) -> Response:
        merchant = bearer_identity(request, self.s.merchant_tokens)
        data = parse_json_object(await read_body(request, self.s.max_body_bytes))
        beneficiary, order_hash = data.get("beneficiary"), data.get("order_hash")
        if not is_address(beneficiary) or not is_bytes32(order_hash):
            raise BadRequest(422, "invalid_field", "beneficiary must be an address and order_hash 0x + 64 hex")
        order_hash = order_hash.lower()
        intent = Intent(f"qr:{order_hash}", "settlement", "QRPayment", "settleQROrder", [beneficiary, order_hash])
        event = Event(f"merchant:{merchant}", order_hash, "settlement", {"beneficiary": beneficiary})
        rec = await self._db(outbox.record, self.pool, self.chain, event, intent)
        return JSONResponse({"intent": rec.intent_key, "status": rec.status}, status_code=202)

    @_errors
    async def verification(self, request: Request) -> Response:
        import rfc8785

        verifier = bearer_identity(request, self.s.verifier_tokens)
        data = parse_json_object(await read_body(request, self.s.max_body_bytes))
        vid, recipient, evidence = data.get("id"), data.get("recipient"), data.get("evidence", {})
        if not isinstance(vid, str) or not 1 <= len(vid) <= 128 or not is_address(recipient) or not isinstance(evidence, dict):
            raise BadRequest(422, "invalid_field", "need id (string), recipient (address), evidence (object)")
        batch_id, amount = uint(data.get("batch_id"), "batch_id", minimum=1), uint(data.get("amount"), "amount", minimum=1)
        try:
            canonical = rfc8785.dumps({"id": vid, "recipient": recipient.lower(), "batch_id": str(batch_id),
                                       "amount": str(amount), "evidence": evidence}).decode()
        except Exception:  # noqa: BLE001 - rfc8785 refuses non-interoperable numbers etc.
            raise BadRequest(422, "invalid_field", "evidence is not canonicalisable JSON") from None
        vhash = "0x" + keccak(text=canonical).hex()
        out = await self._db(records.create_verification, self.pool, vid, recipient, batch_id, amount, canonical, vhash, verifier)
        return JSONResponse(out, status_code=200 if out["duplicate"] else 201)

    @_errors
    async def approve(self, request: Request) -> Response:
        verifier = bearer_identity(request, self.s.verifier_tokens)
        out = await self._db(records.approve_verification, self.pool, self.chain, request.path_params["vid"], verifier)
        return JSONResponse(out, status_code=202)

    @_errors
    async def intent(self, request: Request) -> Response:
        view = await self._db(outbox.intent_view, self.pool, request.path_params["key"])
        if view is None:
            raise BadRequest(404, "not_found", "no intent with this key")
        return JSONResponse(view)

    # ---- ops -------------------------------------------------------------------------------------------------
    def ready(self) -> tuple[bool, dict]:
        try:
            with self.pool.connection() as conn:
                conn.execute("SELECT 1")
        except Exception:  # noqa: BLE001
            return False, {"database": "down"}
        detail: dict[str, Any] = {"database": "ok"}
        if self.sender is not None:
            detail["nonce_owner"] = self.sender.lease.held
        return True, detail

    def health(self) -> tuple[bool, dict]:
        if self.sender is None:
            return True, {}
        age = time.monotonic() - self.sender.last_round
        return age < 60, {"sender_round_age_s": round(age, 1)}

    def asgi(self) -> Starlette:
        routes = [
            Route("/webhooks/stripe", self.stripe, methods=["POST"]),
            Route("/webhooks/mpesa/{secret}", self.mpesa_callback, methods=["POST"]),
            Route("/mpesa/stkpush", self.mpesa_push, methods=["POST"]),
            Route("/iot/readings", self.iot_reading, methods=["POST"]),
            Route("/iot/readings/{rid}/proof", self.iot_proof, methods=["GET"]),
            Route("/settlements", self.settlement, methods=["POST"]),
            Route("/verifications", self.verification, methods=["POST"]),
            Route("/verifications/{vid}/approve", self.approve, methods=["POST"]),
            Route("/intents/{key:path}", self.intent, methods=["GET"]),
            *ops_routes(self.ready, self.registry, self.health),
        ]
        return Starlette(routes=routes)
