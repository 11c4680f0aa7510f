"""A credit batch (ERC-1155 token id) with its registry details."""

from __future__ import annotations

from typing import Any

import strawberry

from gqlapi.convert import checksum, filled
from gqlapi.scalars import BigInt, BlockNumber
from store.serials import parse_range


@strawberry.type(description="A batch of carbon credits: one token id of CarbonCredit (ERC-1155), or one token of "
                 "an existing market (a Toucan TCO2, an ICR vintage token id) with id int(token) << 96 | token id.")
class CreditBatch:
    chain: str
    batch_id: BigInt
    protocol: str = strawberry.field(description="carbonledger (our CarbonCredit) or the market protocol of an "
                                     "external token: toucan_tco2, icr_project, klima_infinity (retired through "
                                     "Klima, token not followed).")
    project_id: str
    vintage: int
    methodology: str
    registry: str
    serial_number: str
    metadata_hash: str
    created_block: BlockNumber
    created_tx: str
    total_minted: BigInt
    total_retired: BigInt

    token_address: str | None = strawberry.field(description="The token contract of an external batch (null for "
                                                 "carbonledger's own).")
    token_id: BigInt | None = strawberry.field(description="The token id within `tokenAddress` (0 for an ERC-20 such "
                                               "as a TCO2; null for carbonledger's own).")
    serial_start: BigInt | None = strawberry.field(description="First registry serial of the batch, when "
                                                   "`serialNumber` ends in -<start>-<end> (Verra style); retirements "
                                                   "consume serials first in, first out.")
    serial_end: BigInt | None = strawberry.field(description="Last registry serial of the batch (see serialStart).")

    @classmethod
    def from_row(cls, row: dict[str, Any], prefix: str = "") -> "CreditBatch":
        p = prefix
        batch_id = int(row[p + "batch_id"] if p + "batch_id" in row else row["batch_id"])
        token = batch_id >> 96
        serials = parse_range(row[p + "serial_number"])
        return filled(cls, {
            "chain": row["chain"],
            "batch_id": batch_id,
            "protocol": row.get(p + "protocol", "carbonledger"),
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
            "token_address": checksum("0x" + format(token, "040x")) if token else None,
            "token_id": batch_id & ((1 << 96) - 1) if token else None,
            "serial_start": serials[1] if serials else None,
            "serial_end": serials[2] if serials else None,
        })


async def load_batch(info: Any, chain: str, batch_id: int, block: int | None) -> CreditBatch | None:
    """The batch through this request's DataLoader."""
    row = await info.context.loaders.batch.load((chain, batch_id, block))
    return None if row is None else CreditBatch.from_row(row)
