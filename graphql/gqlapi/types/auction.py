"""An English auction of a credit lot and its bids."""

from __future__ import annotations

from typing import Annotated, Any

import strawberry

from gqlapi.convert import checksum
from gqlapi.scalars import BigInt, BlockNumber, Timestamp
from gqlapi.sql import upto
from gqlapi.types.credit_batch import CreditBatch, load_batch
from gqlapi.types.event import Event, event_fields


@strawberry.type(description="A bid: native currency escrowed in the contract, or a fiat hold recorded by the oracle "
                 "(paymentRef).")
class AuctionBid(Event):
    auction_id: BigInt
    bidder: str
    price_per_unit: BigInt
    ends_at: Timestamp = strawberry.field(description="The auction's end after this bid, unix seconds (later than before "
                                    "when the bid came in the anti-sniping window).")
    payment_ref: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "AuctionBid":
        return cls(**event_fields(row), auction_id=int(row["auction_id"]), bidder=checksum(row["bidder"]),  # type: ignore[arg-type]
                   price_per_unit=int(row["price_per_unit"]), ends_at=int(row["end_time"]),
                   payment_ref=row["payment_ref"])


@strawberry.type(description="An English auction of a credit lot (prices per unit, base units). status: active | "
                 "settled (a winner got the lot) | unsold (no bid: the lot went back to the seller).")
class Auction:
    chain: str
    auction_id: BigInt
    seller: str
    batch_id: BigInt
    amount: BigInt
    reserve_price_per_unit: BigInt
    min_increment_per_unit: BigInt
    ends_at: Timestamp = strawberry.field(description="Unix seconds; a late bid moves it (anti-sniping).")
    status: str
    bid_count: int
    winner: str | None
    created_block: BlockNumber
    created_tx: str
    updated_block: BlockNumber = strawberry.field(description="Block at which this state began.")
    highest_bidder: strawberry.Private[str | None]
    highest_price: strawberry.Private[int | None]
    block: strawberry.Private[int | None]

    @strawberry.field(description="The highest bid so far (the winning one once settled); null before any bid.")
    async def highest_bid(self, info: strawberry.Info) -> AuctionBid | None:
        rows = await self._bids(info, 1)
        return rows[0] if rows else None

    @strawberry.field(description="Bids, newest first.")
    async def bids(self, info: strawberry.Info,
                   first: Annotated[int | None, strawberry.argument(description="Most bids (default and max: the max page size).")] = None
                   ) -> list[AuctionBid]:
        limit = info.context.limits.max_page_size
        return await self._bids(info, limit if first is None else max(0, min(first, limit)))

    async def _bids(self, info: strawberry.Info, limit: int) -> list[AuctionBid]:
        params: list[Any] = [self.chain, self.auction_id]
        cond = upto("b", self.block, params)
        rows = await info.context.db.fetch(
            f"SELECT b.* FROM auction_bid b WHERE b.chain = %s AND b.auction_id = %s AND {cond} "
            "ORDER BY b.block_number DESC, b.log_index DESC LIMIT %s", [*params, limit])
        return [AuctionBid.from_row(r) for r in rows]

    @strawberry.field
    async def batch(self, info: strawberry.Info) -> CreditBatch | None:
        return await load_batch(info, self.chain, self.batch_id, self.block)

    @classmethod
    def from_row(cls, row: dict[str, Any], block: int | None = None) -> "Auction":
        return cls(
            chain=row["chain"], auction_id=int(row["auction_id"]), seller=checksum(row["seller"]),  # type: ignore[arg-type]
            batch_id=int(row["batch_id"]), amount=int(row["amount"]),
            reserve_price_per_unit=int(row["reserve_price_per_unit"]),
            min_increment_per_unit=int(row["min_increment_per_unit"]), ends_at=int(row["end_time"]),
            status=row["status"], bid_count=int(row["bid_count"]), winner=checksum(row["winner"]),
            created_block=row["created_block"], created_tx=row["created_tx"], updated_block=row["valid_from"],
            highest_bidder=row["highest_bidder"],
            highest_price=None if row["highest_price_per_unit"] is None else int(row["highest_price_per_unit"]),
            block=block)
