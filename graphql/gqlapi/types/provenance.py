"""A provenance trace: what an auditor prints."""

from __future__ import annotations

import strawberry

from gqlapi.scalars import BigInt
from gqlapi.types.certificate import Certificate
from gqlapi.types.credit_batch import CreditBatch, load_batch
from gqlapi.types.provenance_event import ProvenanceEvent


@strawberry.type(description="The chain of custody of a batch, of an owner's credits in it, or of a certificate.")
class Provenance:
    chain: str
    batch_id: BigInt
    certificate: Certificate | None
    owner: str | None
    events: list[ProvenanceEvent] = strawberry.field(description="In chain order (block, log index).")
    truncated: bool = strawberry.field(description="True when more events exist than `first` allowed.")
    block: strawberry.Private[int | None]

    @strawberry.field(description="The batch's registry details.")
    async def batch(self, info: strawberry.Info) -> CreditBatch | None:
        return await load_batch(info, self.chain, self.batch_id, self.block)
