"""Block references: the `block: {number}` time-travel argument and a block in `_meta`."""

from __future__ import annotations

import strawberry

from gqlapi.convert import iso
from gqlapi.scalars import BlockNumber, Timestamp


@strawberry.input(description="Answer as of this block: state valid at it, events at or below it. Give `number`, "
                  "or `version` for a block number a GraphQL Int cannot carry (an Aptos ledger version).")
class BlockInput:
    number: int | None = strawberry.field(default=None, description="The block number (a GraphQL Int, below 2**31).")
    version: BlockNumber | None = strawberry.field(default=None, description="The block number as a 64-bit "
                                                   "BlockNumber: an Aptos chain's blocks are its ledger versions, past "
                                                   "2**31 on mainnet. Give this or `number`.")

    def at(self, what: str = "block") -> int:
        """The block asked for: exactly one of `number` and `version`, ≥ 0 (UserError naming `what` otherwise)."""
        return block_arg(self.number, self.version, what)


def block_arg(number: int | None, version: int | None, what: str) -> int:
    from gqlapi.errors import UserError

    if (number is None) == (version is None):
        raise UserError(f"{what}: give one of number or version")
    n = number if number is not None else version
    if n < 0:  # type: ignore[operator]
        raise UserError(f"{what}.number must be ≥ 0")
    return n  # type: ignore[return-value]


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
