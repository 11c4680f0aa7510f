"""auctions(where, orderBy, first, after, block) and auction(id, chain, block): versioned rows, current or as of a block."""

from __future__ import annotations

from enum import Enum

import strawberry

from gqlapi.convert import address_arg, uint_arg
from gqlapi.errors import UserError
from gqlapi.resolvers.certificates import PROJECT
from gqlapi.resolvers.common import ConnectionSpec, Query, as_of, connection_resolver
from gqlapi.scalars import BigInt, Timestamp
from gqlapi.sql import asof, chain_is
from gqlapi.types.auction import Auction
from gqlapi.types.block import BlockInput


@strawberry.input(description="Auction filters (all optional, AND-ed).")
class AuctionFilter:
    chain: str | None = None
    auction_id: BigInt | None = None
    batch_id: BigInt | None = None
    project_id: str | None = None
    seller: str | None = None
    winner: str | None = None
    status: str | None = strawberry.field(default=None, description="active | settled | unsold")
    ends_before: Timestamp | None = strawberry.field(default=None, description="endsAt < (unix seconds).")
    ends_after: Timestamp | None = strawberry.field(default=None, description="endsAt ≥ (unix seconds).")


@strawberry.enum
class AuctionOrder(Enum):
    ENDING_SOON = "ending_soon"
    NEWEST = "newest"
    OLDEST = "oldest"


ORDERS = {
    "ENDING_SOON": (("a.end_time", False), ("a.chain", False), ("a.auction_id", False)),
    "NEWEST": (("a.created_block", True), ("a.chain", True), ("a.auction_id", True)),
    "OLDEST": (("a.created_block", False), ("a.chain", False), ("a.auction_id", False)),
}


def _filters(q: Query, w: AuctionFilter) -> None:
    q.when(uint_arg(w.auction_id, "where.auctionId"), "a.auction_id = %s")
    q.when(uint_arg(w.batch_id, "where.batchId"), "a.batch_id = %s").when(w.project_id, PROJECT.format(a="a"))
    q.when(address_arg(w.seller, "where.seller"), "a.seller = %s").when(address_arg(w.winner, "where.winner"), "a.winner = %s")
    q.when(w.status, "a.status = %s").when(w.ends_before, "a.end_time < %s").when(w.ends_after, "a.end_time >= %s")


auctions = connection_resolver(ConnectionSpec(
    "auction a", AuctionFilter, AuctionOrder, ORDERS, Auction, _filters, versioned=True,
    description="English auctions as they are now (or were at `block`), ending soonest first by default."),
    "auctions", __name__)


async def auction(
    info: strawberry.Info, id: BigInt, chain: str | None = None, block: BlockInput | None = None
) -> Auction | None:
    """One auction by its on-chain id (pass `chain` when several chains are indexed)."""
    at = await as_of(info, block, chain)
    q = Query("SELECT a.* FROM auction a").add("a.auction_id = %s", uint_arg(id, "id"))
    q.add(chain_is("a", chain, q.params))
    q.where.append(asof("a", at, q.params))
    rows = await info.context.db.fetch(f"{q.select} WHERE {q.sql_where()} LIMIT 2", q.params)
    if len(rows) > 1:
        raise UserError(f"auction {id} exists on several chains; pass `chain`")
    return Auction.from_row(rows[0], at) if rows else None
