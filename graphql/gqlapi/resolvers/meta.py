"""_meta: indexing freshness per chain."""

from __future__ import annotations

import strawberry

from gqlapi.types.meta import ChainMeta


async def meta(info: strawberry.Info, chain: str | None = None) -> list[ChainMeta]:
    """One entry per indexed chain: last indexed block, finalized block, indexing errors."""
    params: list = []
    cond = ""
    if chain is not None:
        cond, params = "WHERE c.chain = %s", [chain]
    rows = await info.context.db.fetch(
        "SELECT c.chain, c.block_number, c.block_hash, c.finalized_number, ib.timestamp AS block_timestamp, "
        "(SELECT count(*) FROM indexing_error e WHERE e.chain = c.chain) AS errors FROM indexer_cursor c "
        f"LEFT JOIN indexed_block ib ON ib.chain = c.chain AND ib.number = c.block_number {cond} ORDER BY c.chain",
        params,
    )
    return [ChainMeta.from_row(r) for r in rows]
