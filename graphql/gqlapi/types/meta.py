"""Indexing freshness per chain (`_meta`)."""

from __future__ import annotations

from typing import Any

import strawberry

from gqlapi.scalars import BlockNumber
from gqlapi.types.block import BlockInfo


@strawberry.type(description="How far the indexer has got on one chain.")
class ChainMeta:
    chain: str
    block: BlockInfo = strawberry.field(description="The last indexed block: what every answer reflects.")
    finalized_block: BlockNumber = strawberry.field(description="The highest block treated as final.")
    has_indexing_errors: bool
    indexing_errors: int = strawberry.field(description="How many logs could not be decoded or applied.")

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "ChainMeta":
        return cls(
            chain=row["chain"],
            block=BlockInfo.from_row(row),
            finalized_block=row["finalized_number"],
            has_indexing_errors=row["errors"] > 0,
            indexing_errors=row["errors"],
        )
