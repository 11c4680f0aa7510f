"""A marketplace listing."""

from __future__ import annotations

from typing import Any

import strawberry

from gqlapi.convert import checksum
from gqlapi.scalars import BigInt, BlockNumber
from gqlapi.types.credit_batch import CreditBatch, load_batch


@strawberry.type(description="Credits escrowed in the marketplace at a fixed price per unit (base units).")
class Listing:
    chain: str
    listing_id: BigInt
    seller: str
    batch_id: BigInt
    price_per_unit: BigInt
    amount_listed: BigInt
    amount_remaining: BigInt
    amount_sold: BigInt
    status: str = strawberry.field(description="active | sold_out | cancelled")
    created_block: BlockNumber
    created_tx: str
    updated_block: BlockNumber = strawberry.field(description="Block at which this state began.")
    block: strawberry.Private[int | None]

    @strawberry.field
    async def batch(self, info: strawberry.Info) -> CreditBatch | None:
        return await load_batch(info, self.chain, self.batch_id, self.block)

    @classmethod
    def from_row(cls, row: dict[str, Any], block: int | None = None) -> "Listing":
        return cls(
            chain=row["chain"],
            listing_id=int(row["listing_id"]),
            seller=checksum(row["seller"]),  # type: ignore[arg-type]
            batch_id=int(row["batch_id"]),
            price_per_unit=int(row["price_per_unit"]),
            amount_listed=int(row["amount_listed"]),
            amount_remaining=int(row["amount_remaining"]),
            amount_sold=int(row["amount_sold"]),
            status=row["status"],
            created_block=row["created_block"],
            created_tx=row["created_tx"],
            updated_block=row["valid_from"],
            block=block,
        )
