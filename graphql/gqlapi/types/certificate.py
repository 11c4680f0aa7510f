"""A retirement certificate (CarbonCredit.Retired)."""

from __future__ import annotations

from typing import Any

import strawberry

from gqlapi.convert import checksum
from gqlapi.scalars import BigInt, BlockNumber
from gqlapi.types.credit_batch import CreditBatch, load_batch
from gqlapi.types.event import Event, event_fields
from gqlapi.types.provenance_event import ProvenanceEvent


@strawberry.type(description="What a third party needs to check a certificate on chain, without our database.")
class CertificateVerification:
    chain: str
    contract: str | None = strawberry.field(description="CarbonCredit's address (null when this API's config does not "
                                            "name it, and for an existing market's certificate).")
    tx_hash: str
    log_index: int
    block_number: BlockNumber
    block_hash: str
    command: str = strawberry.field(description="Checks the certificate and its custody chain with only a node: "
                                    "replace RPC_URL with any node's JSON-RPC URL.")


@strawberry.type(description="A retirement certificate: credits burned on behalf of a beneficiary.")
class Certificate(Event):
    id: BigInt = strawberry.field(description="The on-chain certificate id (unique per chain).")
    holder: str
    beneficiary: str
    reason: str
    amount: BigInt
    batch_id: BigInt
    serial_range: str | None = strawberry.field(description="The batch's registry serials this retirement consumed "
                                                "(first in, first out within the batch), e.g. VCS-VCU-…-101-120; null "
                                                "when the batch has no serial range.")
    market_ref: str | None = strawberry.field(description="An existing market's own references for this retirement "
                                              "(Toucan eventId and certificate NFT, ICR retirement NFT, the Klima "
                                              "retirement); null for carbonledger's own.")
    block: strawberry.Private[int | None]

    @strawberry.field(description="The retired batch's registry details.")
    async def batch(self, info: strawberry.Info) -> CreditBatch | None:
        return await load_batch(info, self.chain, self.batch_id, self.block)

    @strawberry.field(description="Chain of custody of the retired credits, mint to retirement, in chain order.")
    async def provenance(self, info: strawberry.Info) -> list[ProvenanceEvent]:
        rows = await info.context.loaders.provenance.load((self.chain, self.id, self.block))
        return [ProvenanceEvent.from_row(r) for r in rows]

    @strawberry.field(description="The on-chain facts and the command to check this certificate independently.")
    def verification(self, info: strawberry.Info) -> CertificateVerification:
        from core.verifycmd import verify_command

        if int(self.batch_id) >> 96:  # an existing market's retirement (chains.evm.markets): no chain-only verifier yet
            return CertificateVerification(
                chain=self.chain, contract=None, tx_hash=self.tx_hash, log_index=self.log_index,
                block_number=self.block_number, block_hash=self.block_hash,
                command=f"not a carbonledger certificate: `carbonledger verify` does not rebuild existing markets' "
                        f"certificates yet; read log {self.log_index} of transaction {self.tx_hash} in block "
                        f"{self.block_number} ({self.block_hash}) with any node")
        known = info.context.contracts.get(self.chain) or {}
        addresses = known.get("contracts") or {}
        return CertificateVerification(
            chain=self.chain, contract=addresses.get("CarbonCredit"), tx_hash=self.tx_hash, log_index=self.log_index,
            block_number=self.block_number, block_hash=self.block_hash,
            command=verify_command(self.id, addresses, known.get("start") or 0, family=known.get("family") or "evm",
                                   package=known.get("package")))

    @classmethod
    def from_row(cls, row: dict[str, Any], block: int | None = None) -> "Certificate":
        return cls(
            **event_fields(row),
            id=int(row["certificate_id"]),
            holder=checksum(row["holder"]),  # type: ignore[arg-type]
            beneficiary=row["beneficiary"],
            reason=row["reason"],
            amount=int(row["amount"]),
            batch_id=int(row["batch_id"]),
            serial_range=row.get("serial_range"),
            market_ref=row.get("market_ref"),
            block=block,
        )
