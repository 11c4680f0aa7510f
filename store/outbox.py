"""The oracle's own tables: provider events, write intents (the outbox), tx attempts, nonces, leases, IoT,
verifications and QR orders.

Invariants (DESIGN.md 6): a provider event and the intent it derives are inserted in one transaction; an
intent's `idempotency_key` is unique, so every duplicate delivery lands on the same row; an attempt (nonce,
signed raw tx, hash) is committed before its broadcast; `oracle_nonce.next_nonce` only moves under the lease
epoch that `oracle_lease` hands out (the fencing token).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, LargeBinary, UniqueConstraint, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from store.base import Base
from store.types import hexstr, int64, uint256

INTENT_STATUSES = ("pending", "signed", "sent", "confirmed", "failed")


def _now() -> Any:
    return func.now()


class OracleIntent(Base):
    """One write the chain must see exactly once. Status: pending -> signed -> sent -> confirmed | failed."""

    __tablename__ = "oracle_intent"

    id: Mapped[int64] = mapped_column(primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(unique=True)
    source: Mapped[str]  # stripe | mpesa | iot | settlement | verification | keeper
    chain: Mapped[str]
    contract: Mapped[str]
    function: Mapped[str]
    args: Mapped[Any] = mapped_column(JSONB)  # ABI-ordered; big ints as decimal strings
    status: Mapped[str] = mapped_column(default="pending", index=True)
    nonce: Mapped[int64 | None]
    signer: Mapped[hexstr | None]
    tx_hash: Mapped[hexstr | None]  # the attempt that was mined (or the latest one)
    block_number: Mapped[int64 | None]
    block_hash: Mapped[hexstr | None]
    error: Mapped[str | None]
    already_on_chain: Mapped[bool] = mapped_column(default=False)  # pre-check found the write done
    created_at: Mapped[dt.datetime] = mapped_column(server_default=_now())
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=_now())
    broadcast_at: Mapped[dt.datetime | None]
    confirmed_at: Mapped[dt.datetime | None]

    __table_args__ = (Index("ix_oracle_intent_claim", "chain", "status", "id"),)


class OracleAttempt(Base):
    """Every signed transaction for an intent (fee bumps add rows with the same nonce); never deleted."""

    __tablename__ = "oracle_attempt"

    id: Mapped[int64] = mapped_column(primary_key=True, autoincrement=True)
    intent_id: Mapped[int64] = mapped_column(ForeignKey("oracle_intent.id"), index=True)
    chain: Mapped[str]
    signer: Mapped[hexstr]
    nonce: Mapped[int64]
    tx_hash: Mapped[hexstr] = mapped_column(unique=True)
    raw_tx: Mapped[bytes] = mapped_column(LargeBinary)
    max_fee: Mapped[int64]
    priority_fee: Mapped[int64]
    gas: Mapped[int64]
    epoch: Mapped[int64]  # lease epoch under which it was signed
    created_at: Mapped[dt.datetime] = mapped_column(server_default=_now())
    broadcast_at: Mapped[dt.datetime | None]
    broadcast_error: Mapped[str | None]


class OracleNonce(Base):
    """The next nonce per (chain, signer), owned by whoever holds the lease."""

    __tablename__ = "oracle_nonce"

    chain: Mapped[str] = mapped_column(primary_key=True)
    signer: Mapped[hexstr] = mapped_column(primary_key=True)
    next_nonce: Mapped[int64]


class OracleLease(Base):
    """Who owns a signing key's nonces. `epoch` rises on every takeover and fences stale owners."""

    __tablename__ = "oracle_lease"

    name: Mapped[str] = mapped_column(primary_key=True)
    owner: Mapped[str]
    epoch: Mapped[int64]
    acquired_at: Mapped[dt.datetime] = mapped_column(server_default=_now())
    heartbeat_at: Mapped[dt.datetime] = mapped_column(server_default=_now())


class ProviderEvent(Base):
    """A verified delivery from a provider, keyed by the provider's own id. Holds no personal data."""

    __tablename__ = "oracle_provider_event"

    provider: Mapped[str] = mapped_column(primary_key=True)  # stripe | mpesa | stripe-recon
    event_id: Mapped[str] = mapped_column(primary_key=True)
    type: Mapped[str]
    intent_key: Mapped[str | None]
    payment_ref: Mapped[str | None] = mapped_column(index=True)
    # accepted (a write intent) | pending (its listing/order is not indexed yet) | flagged (needs a human: `flag`
    # says why) | recorded (nothing to do)
    status: Mapped[str] = mapped_column(server_default=text("'recorded'"))
    # refund | dispute | invalid_metadata | unmatched_payment | conflicting_receipt | amount_mismatch | ...:
    # the list is in oracle/payments.py
    flag: Mapped[str | None]
    summary: Mapped[Any] = mapped_column(JSONB)  # ids, amounts, codes only
    claim: Mapped[Any | None] = mapped_column(JSONB)  # what a pending payment is re-evaluated from (oracle.payments)
    received_at: Mapped[dt.datetime] = mapped_column(server_default=_now())

    __table_args__ = (Index("ix_oracle_provider_event_attention", "status", "received_at",
                            postgresql_where=text("status IN ('pending', 'flagged')")),)


class Payment(Base):
    """One provider payment (a PaymentIntent, an M-Pesa checkout) and what was decided for it, once.

    The constraints are invariant 8: a payment is decided at most once (primary key), a payment reference (the
    on-chain paymentRef: PaymentIntent id, M-Pesa receipt) pays at most once, and an escrow order has at most one
    accepted off-chain payment. Oracles racing on duplicate deliveries meet here, not in application code.
    """

    __tablename__ = "oracle_payment"

    provider: Mapped[str] = mapped_column(primary_key=True)  # stripe | mpesa
    payment_id: Mapped[str] = mapped_column(primary_key=True)  # PaymentIntent id | CheckoutRequestID
    payment_ref: Mapped[str]
    chain: Mapped[str]
    contract: Mapped[str]  # Marketplace | Escrow | Auction
    target_id: Mapped[uint256]  # listing id | order id | auction id
    amount: Mapped[int64]  # minor units of `currency`, as the provider counts them
    currency: Mapped[str]
    price_wei: Mapped[uint256 | None]  # the indexed price it was checked against
    units: Mapped[uint256 | None]  # credits of the listing it buys (None for an order): held against the listing;
    # for an auction bid, its price per credit
    hold: Mapped[str | None]  # an auction bid's payment hold, once decided: captured (the bid won) | released
    # accepted | flagged (never written; or written and refused on chain: write_failed / double_paid, refund due)
    status: Mapped[str]
    flag: Mapped[str | None]
    intent_key: Mapped[str | None]  # the write, when accepted
    event_id: Mapped[str]  # the provider event that decided it
    created_at: Mapped[dt.datetime] = mapped_column(server_default=_now())

    __table_args__ = (
        UniqueConstraint("provider", "payment_ref", name="uq_oracle_payment_ref"),
        Index("uq_oracle_payment_order", "chain", "target_id", unique=True,
              postgresql_where=text("contract = 'Escrow' AND status = 'accepted'")),
        # a listing's accepted payments, summed (under the listing's lock) against its remaining credits
        Index("ix_oracle_payment_listing", "chain", "target_id",
              postgresql_where=text("contract = 'Marketplace' AND status = 'accepted'")),
    )


class MpesaRequest(Base):
    """An STK push we initiated: what it pays for and how much, until Daraja's callback settles it."""

    __tablename__ = "oracle_mpesa_request"

    checkout_request_id: Mapped[str] = mapped_column(primary_key=True)
    merchant_request_id: Mapped[str | None]
    amount: Mapped[int64]  # KES, whole shillings as Daraja takes them
    target: Mapped[Any] = mapped_column(JSONB)  # {"order_id": n} or {"listing_id", "buyer", "amount"}
    # initiating | refused | pending | paid | flagged (paid, not written: see its provider event) | failed | paid_no_callback
    status: Mapped[str] = mapped_column(default="pending")
    result_code: Mapped[int | None]
    receipt: Mapped[str | None]
    created_at: Mapped[dt.datetime] = mapped_column(server_default=_now())
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=_now())
    merchant: Mapped[str | None]  # who pushed it: that merchant may read the payment's intent in full


class IotDevice(Base):
    """Per-device state; the device's key lives in config. `last_ts` makes replays and reordering visible."""

    __tablename__ = "oracle_iot_device"

    device_id: Mapped[str] = mapped_column(primary_key=True)
    last_ts: Mapped[int64 | None]
    readings: Mapped[int64] = mapped_column(default=0)
    first_seen: Mapped[dt.datetime] = mapped_column(server_default=_now())


class IotAnchor(Base):
    """One Merkle root over a window of readings, written by `IoTAnchor.anchor`."""

    __tablename__ = "oracle_iot_anchor"

    id: Mapped[int64] = mapped_column(primary_key=True, autoincrement=True)
    root: Mapped[hexstr] = mapped_column(unique=True)
    leaf_count: Mapped[int64]
    window_start: Mapped[int64]
    window_end: Mapped[int64]
    quality_score: Mapped[int]
    intent_key: Mapped[str]
    created_at: Mapped[dt.datetime] = mapped_column(server_default=_now())


class IotReading(Base):
    """A verified reading: canonical JSON (RFC 8785), its leaf, flags, quality, and once anchored its proof."""

    __tablename__ = "oracle_iot_reading"

    id: Mapped[int64] = mapped_column(primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("oracle_iot_device.device_id"))
    ts: Mapped[int64]
    canonical: Mapped[str]
    leaf: Mapped[hexstr] = mapped_column(index=True)
    flags: Mapped[Any] = mapped_column(JSONB)
    quality: Mapped[int]
    anchor_id: Mapped[int64 | None] = mapped_column(ForeignKey("oracle_iot_anchor.id"), index=True)
    proof: Mapped[Any | None] = mapped_column(JSONB)
    received_at: Mapped[dt.datetime] = mapped_column(server_default=_now())

    __table_args__ = (UniqueConstraint("device_id", "ts", name="uq_oracle_iot_reading_device_ts"),)


class VerificationRequest(Base):
    """A credit issuance request; approval by a verifier turns it into `CarbonCredit.mint`."""

    __tablename__ = "oracle_verification"

    id: Mapped[str] = mapped_column(primary_key=True)
    recipient: Mapped[hexstr]
    batch_id: Mapped[str]  # uint256 as decimal string
    amount: Mapped[str]
    verification_hash: Mapped[hexstr] = mapped_column(unique=True)
    canonical: Mapped[str]
    status: Mapped[str] = mapped_column(default="requested")  # requested | approved
    requested_by: Mapped[str]  # verifier names; never equal once approved (four eyes)
    approved_by: Mapped[str | None]
    approved_at: Mapped[dt.datetime | None]
    intent_key: Mapped[str | None]
    created_at: Mapped[dt.datetime] = mapped_column(server_default=_now())

    __table_args__ = (
        CheckConstraint("approved_by IS NULL OR approved_by <> requested_by", name="four_eyes"),
        Index("ix_oracle_verification_approver", "approved_by", "approved_at"),  # the approver's 24-hour total
    )


class Verifier(Base):
    """One row per verifier that approved something: its row lock serialises that verifier's approvals, so the
    24-hour cap is checked and used in one step (two racing approvals cannot both fit under it)."""

    __tablename__ = "oracle_verifier"

    name: Mapped[str] = mapped_column(primary_key=True)
    approvals: Mapped[int64] = mapped_column(server_default=text("0"))
    last_approved_at: Mapped[dt.datetime | None]


class QrOrder(Base):
    """A QR order: the hash the oracle issued to the merchant that created it (keccak of a domain tag, the merchant
    and a random `nonce`: unpredictable, so nobody can claim it first), bound to that merchant and its payout address
    at the time: only that merchant may have it settled, and only to that address. `settlements` counts the intents
    queued for it (a new one only after the previous one failed)."""

    __tablename__ = "oracle_qr_order"

    chain: Mapped[str] = mapped_column(primary_key=True)
    order_hash: Mapped[hexstr] = mapped_column(primary_key=True)
    merchant: Mapped[str]
    nonce: Mapped[hexstr]  # 32 random bytes: order_hash can be recomputed from (merchant, nonce)
    payout_address: Mapped[hexstr]
    intent_key: Mapped[str | None]
    settlements: Mapped[int] = mapped_column(server_default=text("0"))
    created_at: Mapped[dt.datetime] = mapped_column(server_default=_now())
