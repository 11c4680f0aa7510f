"""The oracle's routes, declared once: `OracleApp.asgi()` builds its Starlette routes from `ROUTES`, and
`oracle.api.openapi` generates the OpenAPI document from the same table and the models of `oracle.api.models`, so
no route is served undocumented and no documented route is missing (a test compares the app with the document).

Each answer lists the error codes it may carry; a test checks every `BadRequest` the code can raise is listed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from oracle.api import models as m


@dataclass(frozen=True)
class Answer:
    """One documented response: a JSON model (or another media type), the error codes it carries, its headers."""

    description: str
    model: type[BaseModel] | None = None
    codes: tuple[str, ...] = ()
    media: str = "application/json"
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Param:
    name: str
    where: Literal["path", "header"]
    description: str
    schema: dict[str, Any]
    example: Any = None
    required: bool = True


@dataclass(frozen=True)
class Op:
    """One route. `id` is the operationId and, for `served="app"`, the `OracleApp` method that handles it."""

    method: str
    path: str  # Starlette's form ({key:path}); the document drops the converter
    id: str
    tag: str
    summary: str
    description: str
    responses: dict[int, Answer]
    body: type[BaseModel] | None = None
    security: tuple[str, ...] = ()  # alternatives (any one of them)
    anonymous: bool = False  # also answers without credentials
    params: tuple[Param, ...] = ()
    served: Literal["app", "ops", "docs"] = "app"  # the OracleApp method, core.service, oracle.api.docs
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def openapi_path(self) -> str:
        return re.sub(r"\{(\w+):\w+\}", r"{\1}", self.path)


def err(description: str, *codes: str, headers: tuple[str, ...] = ()) -> Answer:
    return Answer(description, m.Error, codes, headers=headers)


def answers(*parts: dict[int, Answer]) -> dict[int, Answer]:
    """Merge response maps; one status from several parts lists all their codes."""
    out: dict[int, Answer] = {}
    for part in parts:
        for status, a in part.items():
            if status in out and out[status].model is m.Error and a.model is m.Error:
                old = out[status]
                a = Answer(f"{old.description}; {a.description}", m.Error,
                           old.codes + tuple(c for c in a.codes if c not in old.codes), headers=old.headers + a.headers)
            out[status] = a
    return dict(sorted(out.items()))


LIMITED = {429: err("too many requests from this client (`oracle.rate_limit`, `webhook_rate_limit`, or too many failed "
                    "authentications: `auth_failure_limit`); retry after `Retry-After` seconds", "rate_limited",
                    headers=("Retry-After",))}
STORE = {422: err("a value the database cannot store (a NUL character)", "invalid_field"),
         500: err("internal error (logged by route name, never the body); retry", "internal"),
         503: err("the database is unavailable; retry", "unavailable")}
BODY = {400: err("the body is not a JSON object, or Content-Length is malformed", "malformed_json", "bad_content_length"),
        413: err("the body exceeds `oracle.max_body_bytes`", "body_too_large"),
        415: err("Content-Type is not application/json", "unsupported_media_type"),
        422: err("a field is missing or invalid (the message names it)", "invalid_field")}
TOKEN = {401: err("missing, malformed or unknown bearer token (a failed authentication)", "unauthorized")}
COMMON = answers(LIMITED, STORE)
WRITE = answers(COMMON, BODY)

_HEX64 = {"type": "string", "pattern": "^0x[0-9a-fA-F]{64}$"}
_PAYMENT_INTENT = """
**The PaymentIntent metadata your checkout must set.** Create the PaymentIntent server-side (never let the payer set
metadata) with `metadata` shaped as [`PaymentTarget`](#/components/schemas/PaymentTarget), values as decimal strings:

- an escrow order: `{"order_id": "42"}`; the order's on-chain `amount` is its price;
- credits of a listing: `{"listing_id": "7", "buyer": "0x…", "amount": "3"}` (`buyer` gets `amount` credits; the price
  is the listing's `pricePerUnit` x `amount`).

The body is verified as raw bytes (the `Stripe-Signature` header, any of `oracle.stripe_webhook_secrets`, timestamp
within `stripe_tolerance_s` back and `stripe_future_skew_s` ahead) before it is parsed. A `payment_intent.succeeded`
event is then only a hint: the oracle re-fetches the PaymentIntent from Stripe's API and acts on that answer:
`status` `succeeded`, `livemode` = `oracle.stripe_livemode`, `currency` with an `oracle.fiat_rates` entry and
`amount_received` covering the price, once per PaymentIntent (payment reference and intent key:
`stripe:<PaymentIntent id>`). A payment that fails a check is recorded with a `flag` (200, never written); one whose
target is not indexed yet is `pending` and decided again later. Refund and dispute events are recorded, flagged;
other event types are acknowledged and ignored.
"""

ROUTES: tuple[Op, ...] = (
    Op("POST", "/webhooks/stripe", "stripe", "payments", "Stripe webhook", _PAYMENT_INTENT,
       answers(WRITE, {
           200: Answer("recorded; the payment decided (`outcome`)", m.StripeAck),
           400: err("no, a malformed, stale, future or wrong signature (a failed authentication), a body that is not "
                    "UTF-8 or not a Stripe event", "missing_signature", "bad_signature", "stale_timestamp",
                    "future_timestamp", "malformed_body", "not_an_event"),
           503: err("no webhook secret or Stripe API key configured, or Stripe's API could not be asked: Stripe "
                    "retries", "not_configured", "stripe_unavailable")}),
       body=m.StripeEvent, security=("stripeSignature",)),
    Op("POST", "/webhooks/mpesa/{secret}", "mpesa_callback", "payments", "M-Pesa STK push callback (Daraja)",
       "Daraja calls the `oracle.mpesa_callback_url`, which ends in the secret path segment. Checked in order: the "
       "source address is in `oracle.mpesa_allowed_ips` (else 403), the secret segment (else 404, like any unknown "
       "path), the callback's shape, a CheckoutRequestID of a push we sent, then Daraja's own STK status query must "
       "agree with the callback (else 409, nothing written). A paid callback's `Amount` must equal what was pushed and "
       "cover the target's price; the payment reference is the `MpesaReceiptNumber` (intent `mpesa:<receipt>`). "
       "Phone numbers are checked for shape and dropped.",
       answers(WRITE, {
           200: Answer("accepted; the decision was recorded", m.MpesaAck),
           400: err("not an STK callback (shape, ids, ResultCode, Amount, receipt)", "invalid_callback"),
           403: err("source address outside `oracle.mpesa_allowed_ips` (a failed authentication)", "forbidden"),
           404: err("wrong secret path segment (a failed authentication), or a CheckoutRequestID we never pushed",
                    "not_found", "unknown_checkout"),
           409: err("Daraja's status query does not confirm this callback", "callback_disputed"),
           503: err("Daraja API not configured or unreachable: Safaricom retries", "not_configured", "daraja_unavailable")}),
       body=m.MpesaCallback,
       params=(Param("secret", "path", "`oracle.mpesa_callback_secret`: a secret (keep it out of logs and documents; "
                                       "compared in constant time)",
                     {"type": "string", "format": "password"}, "<mpesa_callback_secret>"),)),
    Op("POST", "/mpesa/stkpush", "mpesa_push", "payments", "Ask a payer's phone for an M-Pesa payment",
       "A merchant starts an STK push for a target shaped like the Stripe metadata. Refused unless the target is "
       "indexed, not paid already and `amount` (whole KES) covers its price. The request is recorded (as this "
       "merchant's) before Daraja is asked; the payment is settled by its callback.",
       answers(WRITE, TOKEN, {
           202: Answer("pushed; wait for the callback", m.StkPushAccepted),
           409: err("the target is not indexed yet, already paid, or not available (cancelled, sold out)",
                    "target_not_indexed", "double_paid", "target_unavailable"),
           422: err("invalid field, an amount that does not cover the price, a currency without a rate, or Daraja "
                    "refused the push (phone, amount)", "invalid_field", "amount_mismatch", "currency_mismatch",
                    "stk_push_refused"),
           502: err("Daraja answered something unreadable (e.g. its OAuth token)", "bad_response"),
           503: err("Daraja API or callback URL not configured, or Daraja unreachable", "not_configured",
                    "daraja_unavailable")}),
       body=m.StkPushRequest, security=("merchantToken",)),
    Op("POST", "/iot/readings", "iot_reading", "iot", "Submit a signed IoT reading",
       "The device signs the raw body: `X-Signature` = hex HMAC-SHA256 of the body with its key in "
       "`oracle.iot_device_keys[X-Device-Id]`; `device_id` in the body must equal `X-Device-Id`. Physically "
       "impossible values are refused; unusual ones are kept with anomaly flags and a lower quality score. Readings "
       "are anchored on chain as one Merkle root every `oracle.anchor_interval_s`.",
       answers(WRITE, {
           200: Answer("the same reading again: stored already", m.ReadingStored),
           201: Answer("stored; anchored with the next batch", m.ReadingStored),
           401: err("unknown device, missing or bad X-Signature, or device_id not X-Device-Id (a failed "
                    "authentication)", "unauthorized"),
           409: err("this device already sent a different reading for this ts", "conflicting_reading"),
           422: err("invalid reading", "invalid_field", "unknown_field", "unknown_metric", "out_of_range",
                    "future_timestamp", "stale_timestamp")}),
       body=m.IoTReading, security=("deviceSignature",),
       params=(Param("X-Device-Id", "header", "the device's id: a key of `oracle.iot_device_keys`",
                     {"type": "string", "maxLength": 64}, "fleet-car-17"),)),
    Op("GET", "/iot/readings/{id}/proof", "iot_proof", "iot", "A reading's Merkle proof and anchor",
       "Public: anyone can check the reading with `IoTAnchor.verify(root, leaf, proof)` on chain once anchored.",
       answers(COMMON, {200: Answer("the reading, its leaf and (once anchored) proof and anchor", m.ReadingProof),
                        404: err("no such reading", "not_found"),
                        422: err("id is not an integer", "invalid_field")}),
       params=(Param("id", "path", "the reading's id (from POST /iot/readings)",
                     {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}, 1),)),
    Op("POST", "/qr/orders", "qr_order", "settlements", "Create a QR order",
       "Issues a new order hash bound to the calling merchant and its `oracle.merchant_payout_addresses` entry; "
       "put the hash in the QR code, the payer then pays on chain (`QRPayment.pay`). Send `{}`: a body naming a "
       "hash is refused (hashes are issued, so they cannot be squatted). Not idempotent: a retry issues another, "
       "harmless unused order.",
       answers(WRITE, TOKEN, {
           201: Answer("created", m.QrOrderCreated),
           403: err("no payout address is configured for this merchant", "no_payout_address")}),
       body=m.QrOrderRequest, security=("merchantToken",)),
    Op("POST", "/settlements", "settlement", "settlements", "Settle a paid QR order",
       "Queues `QRPayment.settleQROrder(payout, order_hash)` for the caller's own order once the indexer has seen it "
       "paid; a repeated request returns the queued intent.",
       answers(WRITE, TOKEN, {
           202: Answer("queued (or queued before)", m.SettlementQueued),
           403: err("the order is another merchant's, or beneficiary is not its payout address", "forbidden",
                    "forbidden_beneficiary"),
           404: err("no QR order with this hash (create it first)", "unknown_order"),
           409: err("no indexed payment for this order yet", "not_paid")}),
       body=m.SettlementRequest, security=("merchantToken",)),
    Op("POST", "/verifications", "verification", "verifications", "Request a mint (verification)",
       "A verifier records a verification; another verifier approves it (four eyes). Idempotent on `id`.",
       answers(WRITE, TOKEN, {
           200: Answer("the same request again", m.VerificationCreated),
           201: Answer("recorded, waiting for approval", m.VerificationCreated),
           409: err("a different request already has this id or hash", "conflicting_verification")}),
       body=m.VerificationRequest, security=("verifierToken",)),
    Op("POST", "/verifications/{id}/approve", "approve", "verifications", "Approve a verification: queue its mint",
       "Another verifier than the requester approves; the mint (`CarbonCredit.mint`) is queued in the same "
       "transaction. Caps: `oracle.verifier_max_approval_amount` per approval, `verifier_max_daily_amount` per "
       "verifier in any 24 hours. No body.",
       answers(COMMON, TOKEN, {
           202: Answer("approved (or approved before); the mint is queued", m.ApprovalQueued),
           403: err("the requester cannot approve, or a cap would be exceeded", "four_eyes", "approval_cap_exceeded",
                    "daily_cap_exceeded"),
           404: err("no such verification request", "not_found")}),
       security=("verifierToken",),
       params=(Param("id", "path", "the verification request's id", {"type": "string", "minLength": 1}, "ver-2024-001"),)),
    Op("GET", "/intents/{key:path}", "intent", "intents", "An on-chain write's status",
       "Without a token: `{key, status}`. With a token: the full view (tx hashes, attempts, error) for the intent's "
       "own merchant (QR order, STK push), its requester and approver (mint), and operators; 403 for others.",
       answers(COMMON, {
           200: Answer("the summary, or the full view", m.IntentAnswer),
           401: err("malformed or unknown bearer token (a failed authentication)", "unauthorized"),
           403: err("this intent is not the caller's", "forbidden"),
           404: err("no intent with this key", "not_found")}),
       security=("merchantToken", "verifierToken", "operatorToken"), anonymous=True,
       params=(Param("key", "path", "the intent's key, e.g. stripe:pi_…, mpesa:<receipt>, qr:0x…, mint:0x…, iot:0x… "
                                    "(may contain '/' and ':')", {"type": "string", "minLength": 1}, "qr:0x" + "ab" * 32),)),
    Op("GET", "/health", "health", "ops", "Liveness", "The process is alive and the sender's loop not wedged.",
       answers(LIMITED, {200: Answer("alive", m.Health), 503: Answer("the sender has not run a round for 60 s", m.Health)}),
       served="ops"),
    Op("GET", "/ready", "ready", "ops", "Readiness", "The database answers.",
       answers(LIMITED, {200: Answer("ready", m.Ready), 503: Answer("the database is down", m.Ready)}), served="ops"),
    Op("GET", "/metrics", "metrics", "ops", "Prometheus metrics", "Prometheus text exposition format.",
       answers(LIMITED, {200: Answer("metrics", media="text/plain")}), served="ops"),
    Op("GET", "/openapi.json", "openapi", "docs", "This document", "The OpenAPI 3.1 document, generated from the code.",
       answers(LIMITED, {200: Answer("the document")}), served="docs"),
    Op("GET", "/docs", "docs", "docs", "API docs page", "Swagger UI rendering this document, served offline (no CDN).",
       answers(LIMITED, {200: Answer("the page", media="text/html"),
                         503: err("swagger-ui-dist is not installed (npm install)", "docs_unavailable")}), served="docs"),
    Op("GET", "/docs/assets/{path:path}", "docs_asset", "docs", "A docs page asset",
       "Swagger UI's files from node_modules/swagger-ui-dist (a fixed allowlist).",
       answers(LIMITED, {200: Answer("the file", media="*/*"), 404: err("not one of the page's assets", "not_found")}),
       params=(Param("path", "path", "a file of the page", {"type": "string"}, "swagger-ui.css"),), served="docs"),
)
