"""One step of an escrow order's status history."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.scalars import JSON

from gqlapi.convert import checksum
from gqlapi.types.event import Event, event_fields


@strawberry.type(description="An escrow event: created, funded, shipped, delivered, disputed, resolved, cancelled.")
class OrderStatusChange(Event):
    event: str
    actor: str | None
    payment_ref: str | None
    data: JSON

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "OrderStatusChange":
        return cls(
            **event_fields(row),
            event=row["event"],
            actor=checksum(row["actor"]),
            payment_ref=row["payment_ref"],
            data=row["data"] or {},
        )
