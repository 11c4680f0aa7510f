"""qrPayments, settlements and iotAnchors: plain event tables, newest or oldest first."""

from __future__ import annotations

from enum import Enum

import strawberry

from gqlapi.convert import address_arg, hash_arg
from gqlapi.resolvers.common import Query, as_of, order_of, paginate
from gqlapi.sql import chain_is, upto
from gqlapi.types.block import BlockInput
from gqlapi.types.iot_anchor import IotAnchor
from gqlapi.types.pagination import Connection
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
    since: int | None = None
    until: int | None = None


@strawberry.input(description="Settlement filters.")
class SettlementFilter:
    chain: str | None = None
    beneficiary: str | None = None
    order_data_hash: str | None = None
    since: int | None = None
    until: int | None = None


@strawberry.input(description="IoT anchor filters.")
class IotAnchorFilter:
    chain: str | None = None
    root: str | None = None
    window_from: int | None = strawberry.field(default=None, description="Anchors whose window ends at or after.")
    window_to: int | None = strawberry.field(default=None, description="Anchors whose window starts before.")
    min_quality: int | None = None


async def qr_payments(info: strawberry.Info, where: QrPaymentFilter | None = None, order_by: EventOrder = EventOrder.NEWEST,
                      first: int | None = None, after: str | None = None, last: int | None = None,
                      before: str | None = None, block: BlockInput | None = None) -> Connection[QrPayment]:
    """QRPayment.Paid events."""
    w = where or QrPaymentFilter()
    at = await as_of(info, block, w.chain)
    q = Query("SELECT p.*, {keys} FROM qr_payment p")
    q.add(chain_is("p", w.chain, q.params)).when(address_arg(w.payer, "where.payer"), "p.payer = %s")
    q.when(hash_arg(w.order_hash, "where.orderHash"), "p.order_hash = %s")
    q.when(w.since, "p.block_timestamp >= %s").when(w.until, "p.block_timestamp < %s")
    q.where.append(upto("p", at, q.params))
    return await paginate(info, q, order_of(order_by, _orders("p")), first, after, QrPayment.from_row, last, before)


async def settlements(info: strawberry.Info, where: SettlementFilter | None = None, order_by: EventOrder = EventOrder.NEWEST,
                      first: int | None = None, after: str | None = None, last: int | None = None,
                      before: str | None = None, block: BlockInput | None = None) -> Connection[Settlement]:
    """QRPayment.Settled events (merchant orders settled by the oracle)."""
    w = where or SettlementFilter()
    at = await as_of(info, block, w.chain)
    q = Query("SELECT s.*, {keys} FROM qr_settlement s")
    q.add(chain_is("s", w.chain, q.params)).when(address_arg(w.beneficiary, "where.beneficiary"), "s.beneficiary = %s")
    q.when(hash_arg(w.order_data_hash, "where.orderDataHash"), "s.order_data_hash = %s")
    q.when(w.since, "s.block_timestamp >= %s").when(w.until, "s.block_timestamp < %s")
    q.where.append(upto("s", at, q.params))
    return await paginate(info, q, order_of(order_by, _orders("s")), first, after, Settlement.from_row, last, before)


async def iot_anchors(info: strawberry.Info, where: IotAnchorFilter | None = None, order_by: EventOrder = EventOrder.NEWEST,
                      first: int | None = None, after: str | None = None, last: int | None = None,
                      before: str | None = None, block: BlockInput | None = None) -> Connection[IotAnchor]:
    """IoTAnchor.Anchored events."""
    w = where or IotAnchorFilter()
    at = await as_of(info, block, w.chain)
    q = Query("SELECT a.*, {keys} FROM iot_anchor a")
    q.add(chain_is("a", w.chain, q.params)).when(hash_arg(w.root, "where.root"), "a.root = %s")
    q.when(w.window_from, "a.window_end >= %s").when(w.window_to, "a.window_start < %s")
    q.when(w.min_quality, "a.quality_score >= %s")
    q.where.append(upto("a", at, q.params))
    return await paginate(info, q, order_of(order_by, _orders("a")), first, after, IotAnchor.from_row, last, before)
