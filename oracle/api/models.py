"""Every request and response body of the oracle's HTTP API, declared once as a pydantic model.

Requests: handlers validate with these models (`parse`); the field checks are the bounded parsers of
`oracle.ingress.common` (`oracle.api.fields`), so the models are exactly as strict as the code they replaced, and
each refusal keeps its status and error code. Fields are checked in declaration order, the order the handlers
checked in. Responses: handlers answer through `reply`, so no answer carries a field the document does not declare.
`oracle.api.openapi` takes every schema of the OpenAPI document from these models.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, PlainValidator, RootModel, Tag,
                      ValidationInfo, WithJsonSchema, field_validator, model_validator)

from oracle.api.fields import Account, Address, Bytes32, DeviceId, Integer, Phone, UInt, fail, finite

# metric -> (hard min, hard max, normal min, normal max): outside the hard limits a reading is refused (physically
# impossible); outside the normal band it is kept and flagged (`oracle.ingress.iot.assess`).
METRICS: dict[str, tuple[float, float, float, float]] = {
    "co2_ppm": (0, 50_000, 300, 5_000),
    "temperature_c": (-60, 100, -20, 50),
    "humidity_pct": (0, 100, 5, 95),
    "energy_kwh": (0, 1e9, 0, 1e6),
    "methane_ppm": (0, 100_000, 0, 1_000),
}


# ---- request bodies -------------------------------------------------------------------------------------------------
class Wire(BaseModel):
    """A request body: strict JSON types (no silent coercion); unknown fields are ignored unless a model forbids them."""

    model_config = ConfigDict(strict=True, frozen=True)
    ERROR: ClassVar[tuple[int, str]] = (422, "invalid_field")


class OrderTarget(Wire):
    """Pays for an escrow order; its price is the order's on-chain `amount`."""

    order_id: UInt("the escrow order id (Escrow.createOrder)", lo=1)


class ListingTarget(Wire):
    """Buys `amount` credits of a listing for `buyer`; its price is the listing's `pricePerUnit` x `amount`."""

    listing_id: UInt("the marketplace listing id (Marketplace.list)", lo=1)
    amount: UInt("how many credits (token units) to buy", lo=1)
    buyer: Account


class AuctionBidTarget(Wire):
    """Bids `price_per_unit` for an auction's whole lot on behalf of `bidder`, backed by a payment hold (a Stripe
    PaymentIntent with capture_method=manual, `requires_capture`): captured if the bid wins, released otherwise."""

    auction_id: UInt("the auction id (Auction.create)", lo=1)
    bidder: Account
    price_per_unit: UInt("the bid per credit, in the chain's base units (wei); the hold must cover it x the lot")


def _target_kind(v: Any) -> str | None:
    """An order when `order_id` is there (even beside `listing_id`), a listing when `listing_id` is, an auction bid
    when `auction_id` is."""
    if isinstance(v, dict) and "order_id" in v:
        return "order"
    if isinstance(v, dict) and "listing_id" in v:
        return "listing"
    return "auction" if isinstance(v, dict) and "auction_id" in v else None


class PaymentTarget(RootModel[Annotated[
        Union[Annotated[OrderTarget, Tag("order")], Annotated[ListingTarget, Tag("listing")],
              Annotated[AuctionBidTarget, Tag("auction")]],
        Discriminator(_target_kind, custom_error_type="invalid_target",
                      custom_error_message="target must be {order_id}, {listing_id, buyer, amount} or "
                                           "{auction_id, bidder, price_per_unit}")]]):
    """What a payment pays for, on chain. The Stripe PaymentIntent's `metadata` (set server-side by your checkout,
    never by the payer; Stripe metadata values are strings) and an STK push's `target` take this shape."""

    model_config = ConfigDict(strict=True, frozen=True, json_schema_extra={"examples": [
        {"order_id": "42"}, {"listing_id": "7", "buyer": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "amount": "3"}]})


class StkPushRequest(Wire):
    """Ask the payer's phone for an M-Pesa payment (Daraja STK push) that pays for `target`."""

    amount: UInt("whole Kenyan shillings to ask for; must cover the target's price", lo=1, bits=32)
    phone: Phone
    target: PaymentTarget
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"phone": "254708374149", "amount": 150, "target": {"order_id": "42"}}]})


class QrOrderRequest(Wire):
    """Create a QR order for the calling merchant: send `{}`. The oracle issues the order hash (keccak256 of a domain
    tag, the merchant and a random nonce), so no merchant can name, and squat, another's hash."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid", json_schema_extra={"examples": [{}]})
    ERROR: ClassVar[tuple[int, str]] = (422, "invalid_field")


class SettlementRequest(Wire):
    """Settle the caller's paid QR order to its payout address (`QRPayment.settleQROrder`)."""

    order_hash: Bytes32
    beneficiary: Annotated[Address | None, Field(description="optional; when given it must equal the payout address "
                                                             "bound when the order was created")] = None
    model_config = ConfigDict(json_schema_extra={"examples": [{"order_hash": "0x" + "ab" * 32}]})


class VerificationRequest(Wire):
    """A verifier's request to mint `amount` credits of `batch_id` to `recipient`, approved by another verifier."""

    id: Annotated[str, Field(min_length=1, max_length=128, description="your id for this request (idempotency key)")]
    recipient: Address
    batch_id: UInt("the credit batch (CarbonCredit.createBatch)", lo=1)
    amount: UInt("credits (token units) to mint", lo=1)
    evidence: Annotated[dict[str, Any], Field(description="any JSON object (RFC 8785-canonicalisable); its keccak, "
                                                          "with the fields above, is the on-chain verificationHash")] = {}
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"id": "ver-2024-001", "recipient": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "batch_id": "1",
         "amount": "250", "evidence": {"report": "ipfs://bafy...", "tonnes": 250}}]})


def _metrics(v: Any, info: ValidationInfo) -> dict[str, Any]:
    if not isinstance(v, dict) or not v:
        raise fail(422, "invalid_field", "metrics must be a non-empty object")
    for name, value in v.items():
        if name not in METRICS:
            raise fail(422, "unknown_metric", f"unknown metric {name!r}")
        lo, hi, _, _ = METRICS[name]
        if not lo <= finite(value, f"metrics.{name}") <= hi:
            raise fail(422, "out_of_range", f"metrics.{name} outside physical limits [{lo}, {hi}]")
    return v


def _battery(v: Any, info: ValidationInfo) -> Any:
    if v is not None and not 0 <= finite(v, "battery_pct") <= 100:
        raise fail(422, "out_of_range", "battery_pct must be within [0, 100]")
    return v


def _calibrated(v: Any, info: ValidationInfo) -> Any:
    ctx = info.context or {}
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0 or v > ctx["now"] + ctx["max_skew_s"]):
        raise fail(422, "invalid_field", "calibrated_at must be unix seconds, not in the future")
    return v


class IoTReading(Wire):
    """One signed reading. The device signs the raw body (X-Signature); its RFC 8785 form is the Merkle leaf."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"device_id": "fleet-car-17", "ts": 1767225600, "metrics": {"co2_ppm": 412.5, "energy_kwh": 3.2},
         "battery_pct": 80, "calibrated_at": 1764633600}]})

    device_id: DeviceId
    ts: Annotated[int, Field(description="unix seconds; within oracle.iot_max_skew_s ahead and oracle.iot_max_age_s back")]
    metrics: Annotated[dict[str, float], PlainValidator(_metrics), WithJsonSchema({
        "type": "object", "minProperties": 1, "additionalProperties": False,
        "description": "at least one metric; outside its limits refused (422 out_of_range), outside its normal band "
                       "kept and flagged out_of_range:<metric> (lower quality score)",
        "properties": {name: {"type": "number", "minimum": lo, "maximum": hi, "description": f"normal band {nlo}..{nhi}"}
                       for name, (lo, hi, nlo, nhi) in METRICS.items()}})]
    battery_pct: Annotated[float | None, PlainValidator(_battery), WithJsonSchema({
        "type": ["number", "null"], "minimum": 0, "maximum": 100, "description": "below 15: flagged low_battery"})] = None
    calibrated_at: Annotated[int | None, PlainValidator(_calibrated), WithJsonSchema({
        "type": ["integer", "null"], "minimum": 0,
        "description": "unix seconds of the last calibration, not in the future; absent or over 180 days old: "
                       "flagged calibration_stale"})] = None

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise fail(400, "malformed_json", "body must be a JSON object")
        extra = set(data) - set(cls.model_fields)
        if extra:
            raise fail(422, "unknown_field", f"unknown field {sorted(extra)[0]!r}")
        return data

    @field_validator("ts")
    @classmethod
    def _window(cls, ts: int, info: ValidationInfo) -> int:
        ctx = info.context or {}
        if ts > ctx["now"] + ctx["max_skew_s"]:
            raise fail(422, "future_timestamp", "ts is in the future")
        if ts < ctx["now"] - ctx["max_age_s"]:
            raise fail(422, "stale_timestamp", "ts is too old")
        return ts


class StripeEventData(Wire):
    object: Annotated[dict[str, Any], Field(description="the event's object; for payment_intent.succeeded a "
                                                        "PaymentIntent (only its id is read: the oracle re-fetches it)")]


class StripeEvent(Wire):
    """A Stripe event as Stripe sends it (only the envelope is read from the body; see the operation)."""

    ERROR: ClassVar[tuple[int, str]] = (400, "not_an_event")
    id: Annotated[str, Field(min_length=1, max_length=255)]
    type: Annotated[str, Field(description="payment_intent.succeeded, refund and dispute events are acted on; "
                                           "others are acknowledged and ignored")]
    data: StripeEventData
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"id": "evt_1PqR", "object": "event", "type": "payment_intent.succeeded", "livemode": False,
         "data": {"object": {"id": "pi_3PqR", "object": "payment_intent", "status": "succeeded",
                             "metadata": {"order_id": "42"}}}}]})


class StkCallbackItem(Wire):
    Name: str
    Value: Annotated[Any, WithJsonSchema({"type": ["string", "number", "null"],
                                          "description": "absent on some items (Balance)"})] = None


class StkCallbackMetadata(Wire):
    Item: Annotated[list[StkCallbackItem], Field(description="Amount (KES; 1, 1.0 or \"1.00\"), MpesaReceiptNumber, "
                                                             "TransactionDate (YYYYMMDDHHMMSS), PhoneNumber (checked, "
                                                             "never kept); other names ignored")]


class StkCallback(Wire):
    MerchantRequestID: Annotated[str, Field(max_length=100)]
    CheckoutRequestID: Annotated[str, Field(min_length=1, max_length=100)]
    ResultCode: Integer(-2**31, 2**31 - 1, "0: paid; anything else: not paid (e.g. 1032 cancelled by the user)")
    ResultDesc: Annotated[str, BeforeValidator(lambda v: v if isinstance(v, str) else "")] = ""
    CallbackMetadata: Annotated[StkCallbackMetadata | None, Field(description="present when ResultCode is 0")] = None


class StkCallbackBody(Wire):
    stkCallback: StkCallback


class MpesaCallback(Wire):
    """Daraja's STK push callback, as Safaricom sends it."""

    ERROR: ClassVar[tuple[int, str]] = (400, "invalid_callback")
    Body: StkCallbackBody
    model_config = ConfigDict(json_schema_extra={"examples": [{"Body": {"stkCallback": {
        "MerchantRequestID": "19465-780693-1", "CheckoutRequestID": "ws_CO_27072017154747416", "ResultCode": 0,
        "ResultDesc": "The service request is processed successfully.", "CallbackMetadata": {"Item": [
            {"Name": "Amount", "Value": 1}, {"Name": "MpesaReceiptNumber", "Value": "LGR7OWQX0R"}, {"Name": "Balance"},
            {"Name": "TransactionDate", "Value": 20170727154800}, {"Name": "PhoneNumber", "Value": 254700000000}]}}}}]})


# ---- response bodies ------------------------------------------------------------------------------------------------
class Reply(BaseModel):
    """A response body, built by `reply` from what the handler computed."""

    model_config = ConfigDict(extra="ignore")


IntentStatus = Annotated[str, Field(description="pending (queued), signed, sent, confirmed (on chain, or found there "
                                                "already) or failed (see error)")]
Outcome = Literal["accepted", "pending", "flagged", "recorded"]


class Error(Reply):
    """Every error: a machine code and a human message. Nothing was written."""

    error: Annotated[str, Field(description="machine-readable code, listed per response")]
    message: str


class StripeAck(Reply):
    """The event was recorded (and its payment decided) before this answer."""

    received: Literal[True]
    event: str
    intent: Annotated[str | None, Field(description="stripe:<PaymentIntent id> when the payment is accepted")]
    status: Annotated[IntentStatus | None, Field(description="the intent's status")]
    outcome: Annotated[Outcome, Field(description="accepted (a write is queued), pending (its listing/order is not "
                                                  "indexed yet), flagged (never written, see flag), recorded (nothing to do)")]
    flag: str | None
    duplicate: Annotated[bool, Field(description="this event or payment was decided before: same answer, nothing new")]


class MpesaAck(Reply):
    """Accepted (Daraja stops retrying); the decision was recorded before this answer."""

    ResultCode: Literal[0]
    ResultDesc: Literal["Accepted"]
    intent: Annotated[str | None, Field(description="mpesa:<MpesaReceiptNumber> when the payment is accepted")]
    outcome: Outcome
    flag: str | None = None


class StkPushAccepted(Reply):
    checkout_request_id: Annotated[str, Field(description="Daraja's CheckoutRequestID; its callback settles the payment")]


class ReadingStored(Reply):
    id: Annotated[int, Field(description="the reading's id (GET /iot/readings/{id}/proof)")]
    leaf: Annotated[str, Field(description="keccak Merkle leaf of the reading's RFC 8785 form")]
    flags: list[str]
    quality: Annotated[int, Field(ge=0, le=10000, description="basis points; 10000 = no anomaly")]
    duplicate: bool


class ReadingProof(Reply):
    """A reading, its leaf and, once anchored, its Merkle proof and the anchor: check it with IoTAnchor.verify."""

    device_id: str
    ts: int
    canonical: Annotated[str, Field(description="the reading's RFC 8785 JSON; hash_leaf(canonical) = leaf")]
    leaf: str
    flags: list[str]
    quality: int
    proof: Annotated[list[str] | None, Field(description="sibling hashes, leaf to root; null until anchored")]
    root: str | None
    intent_key: str | None
    anchor_status: IntentStatus | None
    anchor_tx: str | None


class QrOrderCreated(Reply):
    order_hash: Annotated[str, Field(description="put it in the QR code: the payer calls QRPayment.pay(order_hash)")]
    payout_address: str


class SettlementQueued(Reply):
    intent: Annotated[str, Field(description="qr:<order_hash> (qr:<order_hash>:<n> after a refused settlement)")]
    status: IntentStatus


class VerificationCreated(Reply):
    id: str
    verification_hash: str
    status: Annotated[str, Field(description="requested, or approved")]
    duplicate: bool


class ApprovalQueued(Reply):
    id: str
    status: Literal["approved"]
    intent_key: Annotated[str, Field(description="mint:<verification_hash>")]


class IntentSummary(Reply):
    """What anyone may see of an intent."""

    key: str
    status: IntentStatus


class Attempt(Reply):
    nonce: int
    tx_hash: str | None
    max_fee: Annotated[str, Field(description="wei, decimal string")]
    priority_fee: Annotated[str, Field(description="wei, decimal string")]
    created_at: str | None
    broadcast_at: str | None
    broadcast_error: str | None


class IntentView(IntentSummary):
    """The full view: for whom the intent is (its merchant, its verifiers) and operators."""

    source: str
    chain: str
    contract: str
    function: str
    nonce: int | None
    tx_hash: str | None
    block_number: int | None
    error: Annotated[str | None, Field(description="why it failed (a contract's custom error, decoded)")]
    already_on_chain: bool
    created_at: str | None
    broadcast_at: str | None
    confirmed_at: str | None
    attempts: list[Attempt]


class IntentAnswer(RootModel[Union[IntentView, IntentSummary]]):
    """The full view with a token that may see it, the summary without one."""


class Health(Reply):
    status: Literal["ok", "unhealthy"]
    sender_round_age_s: Annotated[float | None, Field(description="seconds since the sender's last round")] = None


class Ready(Reply):
    ready: bool
    database: Literal["ok", "down"]
    nonce_owner: Annotated[bool | None, Field(description="this oracle's sender process owns the signing key's nonces")] = None
