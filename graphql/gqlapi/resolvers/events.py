"""qrPayments, settlements and iotAnchors: plain event tables, newest or oldest first."""

from __future__ import annotations

from enum import Enum

import strawberry

from gqlapi.convert import address_arg, hash_arg
from gqlapi.resolvers.common import ConnectionSpec, Query, connection_resolver
from gqlapi.scalars import Timestamp
from gqlapi.types.iot_anchor import IotAnchor
from gqlapi.types.qr_payment import QrPayment
from gqlapi.types.settlement import Settlement


@strawberry.enum
class EventOrder(Enum):
    NEWEST = "newest"
    OLDEST = "oldest"


def _orders(a: str) -> dict:
    return {
        "NEWEST": ((f"{a}.block_number", True), (f"{a}.chain", True), (f"{a}.log_index", True)),
        "OLDEST": ((f"{a}.block_number", False), (f"{a}.chain", False), (f"{a}.log_index", False)),
    }


@strawberry.input(description="QR payment filters.")
class QrPaymentFilter:
    chain: str | None = None
    payer: str | None = None
    order_hash: str | None = None
    since: Timestamp | None = strawberry.field(default=None, description="Block timestamp ≥ (unix seconds).")
    until: Timestamp | None = strawberry.field(default=None, description="Block timestamp < (unix seconds).")


@strawberry.input(description="Settlement filters.")
class SettlementFilter:
    chain: str | None = None
    beneficiary: str | None = None
    order_data_hash: str | None = None
    since: Timestamp | None = strawberry.field(default=None, description="Block timestamp ≥ (unix seconds).")
    until: Timestamp | None = strawberry.field(default=None, description="Block timestamp < (unix seconds).")


@strawberry.input(description="IoT anchor filters.")
class IotAnchorFilter:
    chain: str | None = None
    root: str | None = None
    window_from: Timestamp | None = strawberry.field(default=None, description="Anchors whose window ends at or after.")
    window_to: Timestamp | None = strawberry.field(default=None, description="Anchors whose window starts before.")
    min_quality: int | None = None


def _qr_filters(q: Query, w: QrPaymentFilter) -> None:
    q.when(address_arg(w.payer, "where.payer"), "p.payer = %s").when(hash_arg(w.order_hash, "where.orderHash"), "p.order_hash = %s")
    q.when(w.since, "p.block_timestamp >= %s").when(w.until, "p.block_timestamp < %s")


def _settlement_filters(q: Query, w: SettlementFilter) -> None:
    q.when(address_arg(w.beneficiary, "where.beneficiary"), "s.beneficiary = %s")
    q.when(hash_arg(w.order_data_hash, "where.orderDataHash"), "s.order_data_hash = %s")
    q.when(w.since, "s.block_timestamp >= %s").when(w.until, "s.block_timestamp < %s")


def _anchor_filters(q: Query, w: IotAnchorFilter) -> None:
    q.when(hash_arg(w.root, "where.root"), "a.root = %s")
    q.when(w.window_from, "a.window_end >= %s").when(w.window_to, "a.window_start < %s")
    q.when(w.min_quality, "a.quality_score >= %s")


qr_payments = connection_resolver(ConnectionSpec(
    "qr_payment p", QrPaymentFilter, EventOrder, _orders("p"), QrPayment, _qr_filters,
    description="QRPayment.Paid events."), "qr_payments", __name__)
settlements = connection_resolver(ConnectionSpec(
    "qr_settlement s", SettlementFilter, EventOrder, _orders("s"), Settlement, _settlement_filters,
    description="QRPayment.Settled events (merchant orders settled by the oracle)."), "settlements", __name__)
iot_anchors = connection_resolver(ConnectionSpec(
    "iot_anchor a", IotAnchorFilter, EventOrder, _orders("a"), IotAnchor, _anchor_filters,
    description="IoTAnchor.Anchored events."), "iot_anchors", __name__)
