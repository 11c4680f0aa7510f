"""A QR order settlement (QRPayment.Settled)."""

from __future__ import annotations

from typing import Any

import strawberry

from gqlapi.convert import checksum
from gqlapi.scalars import BigInt
from gqlapi.types.event import Event, event_fields


@strawberry.type(description="A merchant order settled to its beneficiary by the settler (QRPayment.Settled).")
class Settlement(Event):
    order_data_hash: str
    beneficiary: str
    amount: BigInt

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Settlement":
        return cls(
            **event_fields(row),
            order_data_hash=row["order_data_hash"],
            beneficiary=checksum(row["beneficiary"]),  # type: ignore[arg-type]
            amount=int(row["amount"]),
        )
