"""listings(where, orderBy, first, after, block): versioned rows, current or as of a block."""

from __future__ import annotations

from enum import Enum

import strawberry

from gqlapi.convert import address_arg, uint_arg
from gqlapi.resolvers.certificates import PROJECT
from gqlapi.resolvers.common import ConnectionSpec, Query, connection_resolver
from gqlapi.scalars import BigInt
from gqlapi.types.listing import Listing


@strawberry.input(description="Listing filters (all optional, AND-ed).")
class ListingFilter:
    chain: str | None = None
    listing_id: BigInt | None = None
    batch_id: BigInt | None = None
    project_id: str | None = None
    seller: str | None = None
    status: str | None = strawberry.field(default=None, description="active | sold_out | cancelled")
    status_in: list[str] | None = None
    max_price: BigInt | None = strawberry.field(default=None, description="pricePerUnit ≤.")


@strawberry.enum
class ListingOrder(Enum):
    NEWEST = "newest"
    OLDEST = "oldest"
    PRICE_ASC = "price_asc"
    PRICE_DESC = "price_desc"


ORDERS = {
    "NEWEST": (("l.created_block", True), ("l.chain", True), ("l.listing_id", True)),
    "OLDEST": (("l.created_block", False), ("l.chain", False), ("l.listing_id", False)),
    "PRICE_ASC": (("l.price_per_unit", False), ("l.chain", False), ("l.listing_id", False)),
    "PRICE_DESC": (("l.price_per_unit", True), ("l.chain", True), ("l.listing_id", True)),
}


def _filters(q: Query, w: ListingFilter) -> None:
    q.when(uint_arg(w.listing_id, "where.listingId"), "l.listing_id = %s")
    q.when(uint_arg(w.batch_id, "where.batchId"), "l.batch_id = %s").when(w.project_id, PROJECT.format(a="l"))
    q.when(address_arg(w.seller, "where.seller"), "l.seller = %s").when(w.status, "l.status = %s")
    q.when(w.status_in, "l.status = ANY(%s)").when(uint_arg(w.max_price, "where.maxPrice"), "l.price_per_unit <= %s")


listings = connection_resolver(ConnectionSpec(
    "listing l", ListingFilter, ListingOrder, ORDERS, Listing, _filters, versioned=True,
    description="Marketplace listings as they are now (or were at `block`)."), "listings", __name__)
