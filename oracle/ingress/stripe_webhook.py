"""Stripe webhooks: verify (stripe library, several secrets, timestamp window both ways), re-fetch, assess.

A verified `payment_intent.succeeded` is only a hint. The PaymentIntent is re-fetched from Stripe's API
(`oracle.stripe_api_key`; a body signed with a leaked secret cannot invent a payment) and that answer is assessed:
status `succeeded`, livemode as configured (`oracle.stripe_livemode`), metadata naming an escrow order
(`order_id`) or a listing (`listing_id`, `buyer`, `amount` = credits), every number through the bounded parsers.
What passes is a `Claim` of `amount_received` in its currency, which `oracle.payments` checks against the indexed
price (and "not paid already") before any write; payment reference and idempotency key are the PaymentIntent id,
so redeliveries, reconciliation and a second event for one payment all land on one decision. Refunds and disputes
are recorded with a flag for compensation. Other types are acknowledged and ignored. The metadata is set
server-side by our checkout, never by the payer.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any
from urllib.parse import quote

import stripe
import urllib3

from core.http import pool_for
from oracle.api.fields import parse
from oracle.api.models import StripeEvent
from oracle.ingress.auth import AuthFailure
from oracle.ingress.common import BadRequest, parse_int, parse_json_object
from oracle.outbox import Event
from oracle.payments import Claim, Target

REFUND_TYPES = ("charge.refunded", "charge.refund.updated", "refund.created", "refund.updated", "refund.failed")
TARGET_KEYS = ("order_id", "listing_id", "amount", "buyer", "auction_id", "bidder", "price_per_unit")
# An auction bid is backed by a hold (capture_method=manual): Stripe says so with this event, the PaymentIntent
# then being `requires_capture`; the oracle captures it if the bid wins and cancels it otherwise (oracle.holds).
HOLD_EVENT = "payment_intent.amount_capturable_updated"
MAX_AMOUNT = 10**15  # minor units; Stripe's own ceiling is 8 digits


def verify(payload: bytes, header: str | None, secrets: list[str], tolerance_s: int, future_skew_s: int,
           now: float | None = None) -> None:
    """Raise BadRequest(400) unless some secret signed `payload` within [now - tolerance, now + skew]."""
    if not header:
        raise AuthFailure(400, "missing_signature", "Stripe-Signature header is missing")
    if not secrets:
        raise BadRequest(503, "not_configured", "no Stripe webhook secret configured")
    if not header.isascii():  # the stripe library compares str signatures with compare_digest: TypeError otherwise
        raise AuthFailure(400, "bad_signature", "Stripe-Signature header is not ASCII")
    t = next((p.split("=", 1)[1] for p in header.split(",") if p.strip().startswith("t=")), None)
    try:
        ts = parse_int(t, "Stripe-Signature timestamp", hi=2**40, status=400, code="bad_signature")
    except BadRequest as err:  # a signature without a usable timestamp is a failed authentication
        raise AuthFailure(err.status, err.code, err.message) from None
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


def derive(event: dict[str, Any]) -> tuple[Event, str | None]:
    """A verified event -> (what to record, None), or for `payment_intent.succeeded` (a provisional event, the
    PaymentIntent id to re-fetch and `assess`). Raises BadRequest(400) only for a body that is not a Stripe event."""
    envelope = parse(StripeEvent, event)
    eid, etype, obj = envelope.id, envelope.type, envelope.data.object
    if etype in ("payment_intent.succeeded", HOLD_EVENT):
        pi_id = obj.get("id")
        if not isinstance(pi_id, str) or not pi_id.startswith("pi_") or len(pi_id) > 255:
            raise BadRequest(400, "not_an_event", f"{etype} without a PaymentIntent object")
        return Event("stripe", eid, etype, {"payment_intent": pi_id}, pi_id), pi_id
    if etype in REFUND_TYPES or etype.startswith("charge.dispute."):
        pi = obj.get("payment_intent")
        pi = pi if isinstance(pi, str) and len(pi) <= 255 else None
        summary = {"object": _short(obj.get("id")), "payment_intent": pi, "amount": _minor(obj.get("amount")),
                   "amount_refunded": _minor(obj.get("amount_refunded")), "status": _short(obj.get("status")),
                   "reason": _short(obj.get("reason"))}
        flag = "dispute" if etype.startswith("charge.dispute.") else "refund"
        return Event("stripe", eid, etype, summary, pi, flag), None
    return Event("stripe", eid, etype, {"ignored": True}), None


def _short(v: Any) -> str | None:
    return v[:100] if isinstance(v, str) else None


def _minor(v: Any) -> int | None:
    try:
        return parse_int(v, "amount", hi=MAX_AMOUNT)
    except BadRequest:
        return None


def assess(event: Event, pi: dict[str, Any] | None, settings: Any) -> tuple[Event, Claim | None]:
    """What Stripe's own PaymentIntent object `pi` (None: Stripe does not know it) lets `event` claim: the event to
    record (flagged when the payment must not be written) and the claim for `oracle.payments`, if any."""
    pi_id = event.payment_ref or ""

    def flagged(flag: str, problem: str, summary: dict[str, Any]) -> tuple[Event, None]:
        return Event(event.provider, event.event_id, event.type, {**summary, "problem": problem}, pi_id, flag), None

    if pi is None or pi.get("id") != pi_id:
        return flagged("payment_not_found", "Stripe's API does not know this PaymentIntent", {"payment_intent": pi_id})
    meta = pi.get("metadata") if isinstance(pi.get("metadata"), dict) else {}
    summary: dict[str, Any] = {
        "payment_intent": pi_id, "status": _short(pi.get("status")), "livemode": pi.get("livemode"),
        "currency": _short(pi.get("currency")), "amount_minor": _minor(pi.get("amount_received")),
        "target": {k: str(meta[k])[:100] for k in TARGET_KEYS if k in meta}}
    if not summary["target"]:
        return Event(event.provider, event.event_id, event.type, summary, pi_id), None  # pays for nothing on chain
    hold = "auction_id" in meta  # a bid: the money is held, not taken, until the auction is decided
    if pi.get("status") != ("requires_capture" if hold else "succeeded"):
        if hold and pi.get("status") == "succeeded":
            return flagged("hold_captured", "an auction bid must be a hold (capture_method=manual), not a payment: "
                           "refund due", summary)
        return flagged("payment_not_succeeded", f"the PaymentIntent is {summary['status']}", summary)
    if pi.get("livemode") is not settings.stripe_livemode:
        return flagged("livemode_mismatch", f"livemode is {pi.get('livemode')}, oracle.stripe_livemode is "
                       f"{settings.stripe_livemode}", summary)
    try:
        target = Target.from_json(meta, status=400, code="invalid_metadata")
        # A hold's value is what may still be captured (Stripe's `amount_capturable`; a stand-in without the field
        # has authorised the whole `amount`).
        held = pi.get("amount_capturable", pi.get("amount"))
        received = parse_int(held if hold else pi.get("amount_received"),
                             "amount_capturable" if hold else "amount_received", hi=MAX_AMOUNT, status=400)
    except BadRequest as err:
        return flagged("invalid_metadata" if err.code == "invalid_metadata" else "invalid_payment", err.message,
                       summary)
    currency = summary["currency"] or ""
    rate = settings.fiat_rates.get(currency)
    claim = Claim("stripe", pi_id, pi_id, target, received, currency, rate.decimals if rate else 2)
    return Event(event.provider, event.event_id, event.type, summary, pi_id), claim


log = logging.getLogger("carbonledger.oracle.stripe")
MAX_BODY_BYTES = 1 << 20  # a Stripe answer read at most: a PaymentIntent is a few KB


def _discard(r: Any) -> None:
    """Close a response whose body is not read to its end (its connection is never reused mid-body) and give its
    pool slot back."""
    r.close()
    r.release_conn()


class Urllib3Client(stripe.HTTPClient):
    """The Stripe library's transport on a urllib3 pool (core.http: the environment's proxy settings read once,
    Stripe's own CA bundle, one pool safe to share between the worker threads). The library's extension point for
    custom clients; its own clients cost more: requests re-reads the environment's proxy settings and ~/.netrc on
    every request, httpx ~0.25 ms more CPU per re-fetch (0.74-0.76 against 0.49-0.52 ms, localstripe, 3 rounds of
    400). A transport fault is the library's APIConnectionError, which it retries (`max_network_retries`)."""

    name = "urllib3"

    def __init__(self, base: str, timeout_s: float = 10.0) -> None:
        super().__init__()
        self._pool, _ = pool_for(base, timeout_s, 16, ca_certs=stripe.ca_bundle_path)

    def request(self, method: str, url: str, headers: Any, post_data: Any = None) -> tuple[bytes, int, Any]:
        try:
            r = self._pool.request(method.upper(), url, headers=dict(headers or {}), body=post_data or None,
                                   preload_content=False)
            try:
                data = r.read(MAX_BODY_BYTES + 1)  # bounded: the library's JSON parser never sees more
            except BaseException:
                _discard(r)
                raise
        except (urllib3.exceptions.HTTPError, OSError) as exc:  # names host and port, never the path or the key
            raise stripe.APIConnectionError(f"could not reach Stripe ({type(exc).__name__})",
                                            should_retry=True) from None
        if len(data) > MAX_BODY_BYTES:  # not a PaymentIntent (a few KB): a wrong stripe_api_base or a hostile peer
            _discard(r)
            log.warning("Stripe's answer is over the size limit; refused (is oracle.stripe_api_base Stripe's API?)",
                        extra={"limit_bytes": MAX_BODY_BYTES})
            raise stripe.APIConnectionError(f"Stripe's answer is over {MAX_BODY_BYTES} bytes", should_retry=False)
        r.release_conn()
        return data, r.status, r.headers

    def request_stream(self, method: str, url: str, headers: Any, post_data: Any = None) -> tuple[Any, int, Any]:
        content, status, rheaders = self.request(method, url, headers, post_data)
        return iter([content]), status, rheaders

    def close(self) -> None:
        self._pool.clear()


@functools.lru_cache(maxsize=4)
def _client(api_key: str, base: str | None) -> stripe.StripeClient:
    # Short timeouts and one retry: the webhook is waiting, and Stripe redelivers what we answer 503 to.
    return stripe.StripeClient(api_key, base_addresses={"api": base} if base else {}, max_network_retries=1,
                               http_client=Urllib3Client(base or stripe.api_base, timeout_s=10))


def client(settings: Any) -> stripe.StripeClient:
    """The Stripe API client of these settings (503 when no API key is configured)."""
    if settings.stripe_api_key is None:
        raise BadRequest(503, "not_configured", "oracle.stripe_api_key is needed to check payments")
    return _client(settings.stripe_api_key.get_secret_value(), settings.stripe_api_base)


def fetch(settings: Any, pi_id: str) -> dict[str, Any] | None:
    """The PaymentIntent as Stripe's API has it now (None: unknown to Stripe); BadRequest(503) when Stripe cannot
    be asked, so the webhook is retried. Asked through the library's `raw_request` (same authentication, retries and
    errors as `payment_intents.retrieve`), whose JSON is the plain dict that `retrieve(...).to_dict()` gives: building
    and unbuilding the library's objects cost 1.6 ms of CPU per re-fetch (4.5 against 2.95 ms, interleaved rounds)."""
    try:
        body = client(settings).raw_request("get", f"/v1/payment_intents/{quote(pi_id, safe='')}").data
    except stripe.InvalidRequestError as err:
        if err.http_status == 404:
            return None
        raise BadRequest(503, "stripe_unavailable", "Stripe refused the PaymentIntent lookup, retry") from None
    except stripe.StripeError:
        raise BadRequest(503, "stripe_unavailable", "could not re-fetch the PaymentIntent from Stripe, retry") from None
    if not isinstance(body, dict):
        raise BadRequest(503, "stripe_unavailable", "Stripe's PaymentIntent lookup did not answer an object, retry")
    return body


def examine(event: Event, pi_id: str, settings: Any) -> tuple[Event, Claim | None]:
    """Re-fetch the PaymentIntent and `assess` the event with Stripe's answer (blocking: run it in a thread)."""
    return assess(event, fetch(settings, pi_id), settings)


def handle(payload: bytes, header: str | None, secrets: list[str], tolerance_s: int, future_skew_s: int
           ) -> tuple[Event, str | None]:
    """Verify and `derive`."""
    verify(payload, header, secrets, tolerance_s, future_skew_s)
    return derive(parse_json_object(payload))
