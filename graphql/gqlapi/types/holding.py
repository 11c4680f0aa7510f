"""An owner's position in one credit batch."""

from __future__ import annotations

from typing import Any

import strawberry

from gqlapi.convert import checksum, filled
from gqlapi.scalars import BigInt, BlockNumber
from gqlapi.types.credit_batch import CreditBatch


@strawberry.type(description="An owner's credits of one batch: tradable (wallet), listed (escrowed), retired.")
class Holding:
    chain: str
    owner: str
    batch_id: BigInt
    tradable: BigInt
    listed: BigInt
    retired: BigInt
    batch: CreditBatch | None
    last_price: BigInt | None = strawberry.field(description="Price per unit of the batch's last trade (base units).")
    valid_from: BlockNumber = strawberry.field(description="Block at which this state began.")
    balance: BigInt = strawberry.field(description="tradable + listed: what the owner still holds.")
    value: BigInt | None = strawberry.field(description="balance × lastPrice (base units); null when the batch never traded.")

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Holding":
        """A row of holding joined with its batch (columns b_*) and last price."""
        tradable, listed = int(row["tradable"]), int(row["listed"])
        price = row["last_price"]
        if price is not None:
            price = int(price)
        balance = tradable + listed
        return filled(cls, {
            "chain": row["chain"],
            "owner": checksum(row["owner"]),
            "batch_id": int(row["batch_id"]),
            "tradable": tradable,
            "listed": listed,
            "retired": int(row["retired"]),
            "batch": CreditBatch.from_row(row, prefix="b_") if row.get("b_project_id") is not None else None,
            "last_price": price,
            "valid_from": row["valid_from"],
            "balance": balance,
            "value": None if price is None else balance * price,
        })
