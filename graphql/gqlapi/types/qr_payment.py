"""A QR payment (QRPayment.Paid)."""

from __future__ import annotations

from typing import Any

import strawberry

from gqlapi.convert import checksum
from gqlapi.scalars import BigInt
from gqlapi.types.event import Event, event_fields


@strawberry.type(description="A payment for a merchant order hash (QRPayment.Paid).")
class QrPayment(Event):
    order_hash: str
    payer: str
    amount: BigInt

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "QrPayment":
        return cls(**event_fields(row), order_hash=row["order_hash"],
                   payer=checksum(row["payer"]), amount=int(row["amount"]))  # type: ignore[arg-type]
