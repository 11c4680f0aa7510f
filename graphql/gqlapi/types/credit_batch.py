"""A credit batch (ERC-1155 token id) with its registry details."""

from __future__ import annotations

from typing import Any

import strawberry

from gqlapi.convert import filled
from gqlapi.scalars import BigInt


@strawberry.type(description="A batch of carbon credits: one ERC-1155 token id.")
class CreditBatch:
    chain: str
    batch_id: BigInt
    project_id: str
    vintage: int
    methodology: str
    registry: str
    serial_number: str
    metadata_hash: str
    created_block: int
    created_tx: str
    total_minted: BigInt
    total_retired: BigInt

    @classmethod
    def from_row(cls, row: dict[str, Any], prefix: str = "") -> "CreditBatch":
        p = prefix
        return filled(cls, {
            "chain": row["chain"],
            "batch_id": int(row[p + "batch_id"] if p + "batch_id" in row else row["batch_id"]),
            "project_id": row[p + "project_id"],
            "vintage": row[p + "vintage"],
            "methodology": row[p + "methodology"],
            "registry": row[p + "registry"],
            "serial_number": row[p + "serial_number"],
            "metadata_hash": row[p + "metadata_hash"],
            "created_block": row[p + "created_block"],
            "created_tx": row[p + "created_tx"],
            "total_minted": int(row[p + "total_minted"]),
            "total_retired": int(row[p + "total_retired"]),
        })


async def load_batch(info: Any, chain: str, batch_id: int, block: int | None) -> CreditBatch | None:
    """The batch through this request's DataLoader."""
    row = await info.context.loaders.batch.load((chain, batch_id, block))
    return None if row is None else CreditBatch.from_row(row)
