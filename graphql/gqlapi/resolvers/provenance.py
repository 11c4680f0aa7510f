"""provenance(batchId | certificateId, owner): the chain of custody an auditor prints."""

from __future__ import annotations

from typing import Annotated

import strawberry

from gqlapi.convert import address_arg, checksum, uint_arg
from gqlapi.errors import UserError
from gqlapi.resolvers.certificates import fetch_certificate
from gqlapi.resolvers.common import as_of
from gqlapi.resolvers.provenance_sql import batch_provenance, owner_provenance
from gqlapi.scalars import BigInt
from gqlapi.sql import INDEXED_CHAINS, page_size
from gqlapi.types.block import BlockInput
from gqlapi.types.provenance import Provenance
from gqlapi.types.provenance_event import ProvenanceEvent


async def _chain_of_batch(info: strawberry.Info, batch_id: int) -> str | None:
    rows = await info.context.db.fetch(
        f"SELECT DISTINCT chain FROM credit_batch WHERE chain = {INDEXED_CHAINS} AND batch_id = %s LIMIT 2", [batch_id])
    if len(rows) > 1:
        raise UserError(f"batch {batch_id} exists on several chains; pass `chain`")
    return rows[0]["chain"] if rows else None


async def provenance(
    info: strawberry.Info,
    batch_id: BigInt | None = None,
    certificate_id: BigInt | None = None,
    owner: str | None = None,
    chain: str | None = None,
    block: BlockInput | None = None,
    first: Annotated[int | None, strawberry.argument(description="Most events to return (default and max: the max page size).")] = None,
) -> Provenance | None:
    """Custody events in chain order: of a certificate's credits, of an owner's credits in a batch, or of a batch."""
    if (batch_id is None) == (certificate_id is None):
        raise UserError("provenance: pass exactly one of batchId or certificateId")
    who = address_arg(owner, "owner")
    limit = page_size(first, info.context.limits.max_page_size, info.context.limits.max_page_size)
    if certificate_id is not None:
        if who is not None:
            raise UserError("provenance: `owner` applies to batchId only (a certificate has its holder)")
        cert, rows = await fetch_certificate(info, certificate_id, chain, await as_of(info, block, chain), provenance=True)
        if cert is None:
            return None
        events = [ProvenanceEvent.from_row(r) for r in rows]
        return Provenance(chain=cert.chain, batch_id=cert.batch_id, certificate=cert, owner=cert.holder,
                          events=events[:limit], truncated=len(events) > limit, block=cert.block)
    bid = uint_arg(batch_id, "batchId")
    at = await as_of(info, block, chain)
    chain = chain or await _chain_of_batch(info, bid)  # type: ignore[arg-type]
    if chain is None:
        return None
    if who is not None:
        rows = await owner_provenance(info.context.db, chain, bid, who, at, limit + 1)  # type: ignore[arg-type]
    else:
        rows = await batch_provenance(info.context.db, chain, bid, at, limit + 1)  # type: ignore[arg-type]
    events = [ProvenanceEvent.from_row(r) for r in rows]
    return Provenance(chain=chain, batch_id=bid, certificate=None, owner=checksum(who), events=events[:limit],  # type: ignore[arg-type]
                      truncated=len(events) > limit, block=at)
