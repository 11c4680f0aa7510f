"""The fields every on-chain event shares (its position on the chain), as a GraphQL interface."""

from __future__ import annotations

from typing import Any

import strawberry

from gqlapi.convert import iso
from gqlapi.scalars import BlockNumber, Timestamp


@strawberry.interface(description="Something that happened in one log of one transaction.")
class Event:
    chain: str
    tx_hash: str
    log_index: int
    block_number: BlockNumber
    block_hash: str
    tx_index: int | None = strawberry.field(description="The transaction's index in its block (EVM transaction "
                                            "index, Substrate extrinsic index); null where the chain has none.")
    timestamp: Timestamp = strawberry.field(description="Block timestamp, unix seconds.")
    time: str = strawberry.field(description="Block timestamp, ISO-8601 UTC.")


def event_fields(row: dict[str, Any]) -> dict[str, Any]:
    """The Event keyword arguments from an event-table row."""
    return {
        "chain": row["chain"],
        "tx_hash": row["tx_hash"],
        "log_index": row["log_index"],
        "block_number": row["block_number"],
        "block_hash": row["block_hash"],
        "tx_index": row.get("tx_index"),
        "timestamp": row["block_timestamp"],
        "time": iso(row["block_timestamp"]),
    }
