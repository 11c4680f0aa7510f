"""A sale: from a marketplace listing or a settled auction."""

from __future__ import annotations

from typing import Any

import strawberry

from gqlapi.convert import checksum
from gqlapi.scalars import BigInt
from gqlapi.types.credit_batch import CreditBatch, load_batch
from gqlapi.types.event import Event, event_fields


@strawberry.type(description="A sale: an on-chain buy, an oracle settlement of a fiat payment (paymentRef), or a "
                 "settled auction (auctionId; the winning bid is pricePerUnit).")
class Trade(Event):
    listing_id: BigInt | None = strawberry.field(description="The listing sold from (null for an auction).")
    auction_id: BigInt | None = strawberry.field(description="The auction settled (null for a listing sale).")
    buyer: str
    seller: str
    batch_id: BigInt
    amount: BigInt
    price_per_unit: BigInt
    payment_ref: str | None
    total: BigInt = strawberry.field(description="amount × pricePerUnit (base units).")
    offchain: bool = strawberry.field(description="True when settled by the oracle after an off-chain payment.")
    block: strawberry.Private[int | None]

    @strawberry.field
    async def batch(self, info: strawberry.Info) -> CreditBatch | None:
        return await load_batch(info, self.chain, self.batch_id, self.block)

    @classmethod
    def from_row(cls, row: dict[str, Any], block: int | None = None) -> "Trade":
        return cls(
            **event_fields(row),
            listing_id=None if row["listing_id"] is None else int(row["listing_id"]),
            auction_id=None if row.get("auction_id") is None else int(row["auction_id"]),
            buyer=checksum(row["buyer"]),  # type: ignore[arg-type]
            seller=checksum(row["seller"]),  # type: ignore[arg-type]
            batch_id=int(row["batch_id"]),
            amount=int(row["amount"]),
            price_per_unit=int(row["price_per_unit"]),
            payment_ref=row["payment_ref"],
            total=int(row["amount"]) * int(row["price_per_unit"]),
            offchain=bool(row["payment_ref"]),
            block=block,
        )
