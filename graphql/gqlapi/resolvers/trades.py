"""trades(where, orderBy, first, after, block)."""

from __future__ import annotations

from enum import Enum

import strawberry

from gqlapi.convert import address_arg, uint_arg
from gqlapi.resolvers.certificates import PROJECT
from gqlapi.resolvers.common import ConnectionSpec, Query, connection_resolver
from gqlapi.scalars import BigInt, Timestamp
from gqlapi.types.trade import Trade


@strawberry.input(description="Trade filters (all optional, AND-ed).")
class TradeFilter:
    chain: str | None = None
    batch_id: BigInt | None = None
    project_id: str | None = None
    listing_id: BigInt | None = None
    auction_id: BigInt | None = None
    buyer: str | None = None
    seller: str | None = None
    participant: str | None = strawberry.field(default=None, description="Buyer or seller.")
    offchain: bool | None = strawberry.field(default=None, description="Only fiat-settled (true) or on-chain (false).")
    payment_ref: str | None = None
    since: Timestamp | None = strawberry.field(default=None, description="Block timestamp ≥ (unix seconds).")
    until: Timestamp | None = strawberry.field(default=None, description="Block timestamp < (unix seconds).")


@strawberry.enum
class TradeOrder(Enum):
    NEWEST = "newest"
    OLDEST = "oldest"
    PRICE_DESC = "price_desc"
    PRICE_ASC = "price_asc"
    AMOUNT_DESC = "amount_desc"


ORDERS = {
    "NEWEST": (("t.block_number", True), ("t.chain", True), ("t.log_index", True)),
    "OLDEST": (("t.block_number", False), ("t.chain", False), ("t.log_index", False)),
    "PRICE_DESC": (("t.price_per_unit", True), ("t.block_number", True), ("t.chain", True), ("t.log_index", True)),
    "PRICE_ASC": (("t.price_per_unit", False), ("t.block_number", False), ("t.chain", False), ("t.log_index", False)),
    "AMOUNT_DESC": (("t.amount", True), ("t.block_number", True), ("t.chain", True), ("t.log_index", True)),
}


def _filters(q: Query, w: TradeFilter) -> None:
    q.when(uint_arg(w.batch_id, "where.batchId"), "t.batch_id = %s").when(w.project_id, PROJECT.format(a="t"))
    q.when(uint_arg(w.listing_id, "where.listingId"), "t.listing_id = %s")
    q.when(uint_arg(w.auction_id, "where.auctionId"), "t.auction_id = %s")
    q.when(address_arg(w.buyer, "where.buyer"), "t.buyer = %s").when(address_arg(w.seller, "where.seller"), "t.seller = %s")
    p = address_arg(w.participant, "where.participant")
    if p is not None:
        q.add("(t.buyer = %s OR t.seller = %s)", p, p)
    if w.offchain is not None:
        q.add("t.payment_ref IS NOT NULL AND t.payment_ref <> ''" if w.offchain else "(t.payment_ref IS NULL OR t.payment_ref = '')")
    q.when(w.payment_ref, "t.payment_ref = %s").when(w.since, "t.block_timestamp >= %s").when(w.until, "t.block_timestamp < %s")


trades = connection_resolver(ConnectionSpec(
    "trade t", TradeFilter, TradeOrder, ORDERS, Trade, _filters,
    description="Marketplace sales, newest first by default."), "trades", __name__)
