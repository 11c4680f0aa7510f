"""Stripe webhooks: verify (stripe library, several secrets, timestamp window both ways), then map to an intent.

`payment_intent.succeeded` whose metadata names an escrow order (`order_id`) or a listing (`listing_id`, `buyer`,
`amount`) becomes `Escrow.recordOffchainPayment` / `Marketplace.settleOffchain` with payment reference = the
PaymentIntent id; the idempotency key is that id, so redeliveries, reconciliation and a second event for the
same payment all land on one intent. Refunds and disputes are recorded with a flag for compensation. Other types
are acknowledged and ignored. The metadata is set server-side by our checkout, never by the payer.
"""

from __future__ import annotations

import time
from typing import Any

import stripe

from oracle.ingress.auth import AuthFailure
from oracle.ingress.common import BadRequest, is_address, parse_json_object
from oracle.outbox import Event, Intent

REFUND_TYPES = ("charge.refunded", "charge.refund.updated", "refund.created", "refund.updated", "refund.failed")


def verify(payload: bytes, header: str | None, secrets: list[str], tolerance_s: int, future_skew_s: int,
           now: float | None = None) -> None:
    """Raise BadRequest(400) unless some secret signed `payload` within [now - tolerance, now + skew]."""
    if not header:
        raise AuthFailure(400, "missing_signature", "Stripe-Signature header is missing")
    if not secrets:
        raise BadRequest(503, "not_configured", "no Stripe webhook secret configured")
    if not header.isascii():  # the stripe library compares str signatures with compare_digest: TypeError otherwise
        raise AuthFailure(400, "bad_signature", "Stripe-Signature header is not ASCII")
    try:
        ts = int(next(p.split("=", 1)[1] for p in header.split(",") if p.strip().startswith("t=")))
    except (StopIteration, ValueError, IndexError):
        raise AuthFailure(400, "bad_signature", "Stripe-Signature header has no timestamp") from None
    now = time.time() if now is None else now
    if ts > now + future_skew_s:
        raise AuthFailure(400, "future_timestamp", "signature timestamp is in the future")
    if ts < now - tolerance_s:
        raise AuthFailure(400, "stale_timestamp", "signature timestamp is outside the tolerance window")
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(payload, header, secret, tolerance_s)
            return
        except stripe.SignatureVerificationError:
            continue
        except UnicodeDecodeError:
            raise BadRequest(400, "malformed_body", "body is not UTF-8") from None
    raise AuthFailure(400, "bad_signature", "no valid Stripe signature for this body")


def _target(pi_id: str, metadata: dict[str, Any]) -> Intent | None | str:
    """Intent for the payment, None when it pays for nothing on chain, or an error string for bad metadata."""
    def num(v: Any) -> int | None:
        s = str(v).strip() if isinstance(v, (str, int)) and not isinstance(v, bool) else ""
        return int(s) if s.isascii() and s.isdigit() and len(s) <= 78 else None

    key = f"stripe:{pi_id}"
    if "order_id" in metadata:
        order = num(metadata["order_id"])
        if not order:
            return "metadata.order_id must be a positive integer"
        return Intent(key, "stripe", "Escrow", "recordOffchainPayment", [str(order), pi_id])
    if "listing_id" in metadata:
        listing, amount, buyer = num(metadata.get("listing_id")), num(metadata.get("amount")), metadata.get("buyer")
        if not listing or not amount or not is_address(buyer):
            return "metadata needs listing_id, amount (positive integers) and buyer (0x address)"
        return Intent(key, "stripe", "Marketplace", "settleOffchain", [str(listing), buyer, str(amount), pi_id])
    return None


def derive(event: dict[str, Any]) -> tuple[Event, Intent | None]:
    """Map a verified event to what we record. Raises BadRequest(400) only for a body that is not a Stripe event."""
    eid, etype = event.get("id"), event.get("type")
    obj = (event.get("data") or {}).get("object") if isinstance(event.get("data"), dict) else None
    if not isinstance(eid, str) or not eid or not isinstance(etype, str) or not isinstance(obj, dict):
        raise BadRequest(400, "not_an_event", "body is not a Stripe event (id, type, data.object)")
    if etype == "payment_intent.succeeded":
        pi_id, meta = obj.get("id"), obj.get("metadata") or {}
        if not isinstance(pi_id, str) or not pi_id.startswith("pi_") or not isinstance(meta, dict):
            raise BadRequest(400, "not_an_event", "payment_intent.succeeded without a PaymentIntent object")
        summary = {"payment_intent": pi_id, "amount": obj.get("amount_received", obj.get("amount")),
                   "currency": obj.get("currency"),
                   "target": {k: str(meta[k]) for k in ("order_id", "listing_id", "amount", "buyer") if k in meta}}
        target = _target(pi_id, meta)
        if isinstance(target, str):
            summary["problem"] = target
            return Event("stripe", eid, etype, summary, pi_id, "invalid_metadata"), None
        return Event("stripe", eid, etype, summary, pi_id), target
    if etype in REFUND_TYPES or etype.startswith("charge.dispute."):
        pi = obj.get("payment_intent")
        pi = pi if isinstance(pi, str) else None
        summary = {"object": obj.get("id"), "payment_intent": pi, "amount": obj.get("amount"),
                   "amount_refunded": obj.get("amount_refunded"), "status": obj.get("status"),
                   "reason": obj.get("reason") if isinstance(obj.get("reason"), str) else None}
        flag = "dispute" if etype.startswith("charge.dispute.") else "refund"
        return Event("stripe", eid, etype, summary, pi, flag), None
    return Event("stripe", eid, etype, {"ignored": True}), None


def handle(payload: bytes, header: str | None, secrets: list[str], tolerance_s: int, future_skew_s: int
           ) -> tuple[Event, Intent | None]:
    verify(payload, header, secrets, tolerance_s, future_skew_s)
    return derive(parse_json_object(payload))
