"""An IoT Merkle-root anchor (IoTAnchor.Anchored)."""

from __future__ import annotations

from typing import Any

import strawberry

from gqlapi.convert import iso
from gqlapi.scalars import BigInt, Timestamp
from gqlapi.types.event import Event, event_fields


@strawberry.type(description="A Merkle root over a window of IoT readings, anchored on chain.")
class IotAnchor(Event):
    anchor_id: BigInt
    root: str
    leaf_count: int
    window_start: Timestamp = strawberry.field(description="Unix seconds.")
    window_end: Timestamp = strawberry.field(description="Unix seconds.")
    quality_score: int
    window_start_time: str = strawberry.field(description="windowStart, ISO-8601 UTC.")
    window_end_time: str = strawberry.field(description="windowEnd, ISO-8601 UTC.")

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "IotAnchor":
        return cls(
            **event_fields(row),
            anchor_id=int(row["anchor_id"]),
            root=row["root"],
            leaf_count=row["leaf_count"],
            window_start=row["window_start"],
            window_end=row["window_end"],
            quality_score=row["quality_score"],
            window_start_time=iso(row["window_start"]),
            window_end_time=iso(row["window_end"]),
        )
