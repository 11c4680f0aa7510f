"""Block references: the `block: {number}` time-travel argument and a block in `_meta`."""

from __future__ import annotations

import strawberry

from gqlapi.convert import iso
from gqlapi.scalars import BlockNumber, Timestamp


@strawberry.input(description="Answer as of this block: state valid at it, events at or below it.")
class BlockInput:
    number: BlockNumber  # 64-bit: an Aptos chain's blocks are ledger versions past 2**31


@strawberry.type(description="An indexed block.")
class BlockInfo:
    number: BlockNumber
    hash: str | None
    timestamp: Timestamp | None = strawberry.field(description="Unix seconds.")
    time: str | None = strawberry.field(description="ISO-8601 UTC.")

    @classmethod
    def from_row(cls, row: dict) -> "BlockInfo":
        return cls(number=int(row["block_number"]), hash=row.get("block_hash"), timestamp=row.get("block_timestamp"),
                   time=iso(row.get("block_timestamp")))
