"""escrowOrders(where, orderBy, first, after, block) with status history."""

from __future__ import annotations

from enum import Enum

import strawberry

from gqlapi.convert import address_arg, uint_arg
from gqlapi.resolvers.common import Query, as_of, order_of, paginate
from gqlapi.scalars import BigInt
from gqlapi.sql import chain_is, asof
from gqlapi.types.block import BlockInput
from gqlapi.types.escrow_order import EscrowOrder
from gqlapi.types.pagination import Connection


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


async def escrow_orders(
    info: strawberry.Info,
    where: EscrowOrderFilter | None = None,
    order_by: EscrowOrderOrder = EscrowOrderOrder.NEWEST,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    block: BlockInput | None = None,
) -> Connection[EscrowOrder]:
    """Escrow orders as they are now (or were at `block`); `history` lists their status changes."""
    w = where or EscrowOrderFilter()
    at = await as_of(info, block, w.chain)
    q = Query("SELECT o.*, {keys} FROM escrow_order o")
    q.add(chain_is("o", w.chain, q.params)).when(uint_arg(w.order_id, "where.orderId"), "o.order_id = %s")
    q.when(address_arg(w.buyer, "where.buyer"), "o.buyer = %s").when(address_arg(w.seller, "where.seller"), "o.seller = %s")
    p = address_arg(w.party, "where.party")
    if p is not None:
        q.add("(o.buyer = %s OR o.seller = %s)", p, p)
    q.when(w.status, "o.status = %s").when(w.status_in, "o.status = ANY(%s)")
    q.when(w.funded_offchain, "o.funded_offchain = %s").when(w.payment_ref, "o.payment_ref = %s")
    q.where.append(asof("o", at, q.params))
    return await paginate(info, q, order_of(order_by, ORDERS), first, after, lambda r: EscrowOrder.from_row(r, at), last, before)
