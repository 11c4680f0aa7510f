"""An escrow order (the Descrow lifecycle)."""

from __future__ import annotations

from typing import Any

import strawberry

from gqlapi.convert import checksum
from gqlapi.scalars import BigInt, BlockNumber
from gqlapi.types.order_status_change import OrderStatusChange


@strawberry.type(description="An escrow order and its current (or as-of-block) status.")
class EscrowOrder:
    chain: str
    order_id: BigInt
    buyer: str
    seller: str
    amount: BigInt
    metadata_hash: str
    status: str = strawberry.field(description="created | funded | shipped | delivered | disputed | resolved | cancelled")
    funded_offchain: bool
    payment_ref: str | None
    tracking_hash: str | None
    refunded_buyer: bool | None
    created_block: BlockNumber
    created_tx: str
    updated_block: BlockNumber = strawberry.field(description="Block at which this state began.")
    block: strawberry.Private[int | None]

    @strawberry.field(description="Every status change, oldest first.")
    async def history(self, info: strawberry.Info) -> list[OrderStatusChange]:
        rows = await info.context.loaders.order_history.load((self.chain, self.order_id, self.block))
        return [OrderStatusChange.from_row(r) for r in rows]

    @classmethod
    def from_row(cls, row: dict[str, Any], block: int | None = None) -> "EscrowOrder":
        return cls(
            chain=row["chain"],
            order_id=int(row["order_id"]),
            buyer=checksum(row["buyer"]),  # type: ignore[arg-type]
            seller=checksum(row["seller"]),  # type: ignore[arg-type]
            amount=int(row["amount"]),
            metadata_hash=row["metadata_hash"],
            status=row["status"],
            funded_offchain=row["funded_offchain"],
            payment_ref=row["payment_ref"],
            tracking_hash=row["tracking_hash"],
            refunded_buyer=row["refunded_buyer"],
            created_block=row["created_block"],
            created_tx=row["created_tx"],
            updated_block=row["valid_from"],
            block=block,
        )
