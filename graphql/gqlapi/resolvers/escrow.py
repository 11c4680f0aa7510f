"""escrowOrders(where, orderBy, first, after, block) with status history."""

from __future__ import annotations

from enum import Enum

import strawberry

from gqlapi.convert import address_arg, uint_arg
from gqlapi.resolvers.common import ConnectionSpec, Query, connection_resolver
from gqlapi.scalars import BigInt
from gqlapi.types.escrow_order import EscrowOrder


@strawberry.input(description="Escrow order filters (all optional, AND-ed).")
class EscrowOrderFilter:
    chain: str | None = None
    order_id: BigInt | None = None
    buyer: str | None = None
    seller: str | None = None
    party: str | None = strawberry.field(default=None, description="Buyer or seller.")
    status: str | None = None
    status_in: list[str] | None = None
    funded_offchain: bool | None = None
    payment_ref: str | None = None


@strawberry.enum
class EscrowOrderOrder(Enum):
    NEWEST = "newest"
    OLDEST = "oldest"
    RECENTLY_UPDATED = "recently_updated"


ORDERS = {
    "NEWEST": (("o.created_block", True), ("o.chain", True), ("o.order_id", True)),
    "OLDEST": (("o.created_block", False), ("o.chain", False), ("o.order_id", False)),
    "RECENTLY_UPDATED": (("o.valid_from", True), ("o.chain", True), ("o.order_id", True)),
}


def _filters(q: Query, w: EscrowOrderFilter) -> None:
    q.when(uint_arg(w.order_id, "where.orderId"), "o.order_id = %s")
    q.when(address_arg(w.buyer, "where.buyer"), "o.buyer = %s").when(address_arg(w.seller, "where.seller"), "o.seller = %s")
    p = address_arg(w.party, "where.party")
    if p is not None:
        q.add("(o.buyer = %s OR o.seller = %s)", p, p)
    q.when(w.status, "o.status = %s").when(w.status_in, "o.status = ANY(%s)")
    q.when(w.funded_offchain, "o.funded_offchain = %s").when(w.payment_ref, "o.payment_ref = %s")


escrow_orders = connection_resolver(ConnectionSpec(
    "escrow_order o", EscrowOrderFilter, EscrowOrderOrder, ORDERS, EscrowOrder, _filters, versioned=True,
    description="Escrow orders as they are now (or were at `block`); `history` lists their status changes."),
    "escrow_orders", __name__)
