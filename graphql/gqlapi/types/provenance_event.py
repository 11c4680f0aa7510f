"""One step in a chain of custody."""

from __future__ import annotations

from enum import Enum
from typing import Any

import strawberry

from gqlapi.convert import checksum
from gqlapi.scalars import BigInt, Timestamp
from gqlapi.types.event import Event, event_fields


@strawberry.enum(description="What happened to the credits.")
class CustodyKind(Enum):
    MINT = "mint"
    TRANSFER = "transfer"
    LIST = "list"
    UNLIST = "unlist"
    SALE = "sale"
    AUCTION_SETTLED = "auction_settled"
    BURN = "burn"
    RETIREMENT = "retirement"


@strawberry.type(description="A movement of credits: mint, transfer, listing, sale, auction settlement, retirement.")
class ProvenanceEvent(Event):
    kind: CustodyKind
    batch_id: BigInt
    amount: BigInt
    from_address: str | None = strawberry.field(description="Sender (for a sale: the seller).")
    to_address: str | None = strawberry.field(description="Receiver (for a listing: the marketplace).")
    verification_hash: str | None = strawberry.field(description="Mint: the verifier's attestation hash.")
    listing_id: BigInt | None
    auction_id: BigInt | None = strawberry.field(description="Auction settlement: the auction (the winning bid is "
                                                 "`pricePerUnit`, its fiat reference `paymentRef`).")
    price_per_unit: BigInt | None
    payment_ref: str | None = strawberry.field(description="Sale: the off-chain payment reference, if fiat-settled.")
    certificate_id: BigInt | None
    beneficiary: str | None
    reason: str | None
    requested_by: str | None = strawberry.field(description="Mint: the verifier who requested it (oracle record).")
    approved_by: str | None = strawberry.field(description="Mint: the verifier who approved it, never the requester.")
    approved_at: Timestamp | None = strawberry.field(description="Mint: when it was approved, unix seconds.")

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "ProvenanceEvent":
        opt = lambda k: None if row.get(k) is None else int(row[k])  # noqa: E731
        return cls(
            **event_fields(row),
            kind=CustodyKind(row["kind"]),
            batch_id=int(row["batch_id"]),
            amount=int(row["amount"]),
            from_address=checksum(row.get("from_addr")),
            to_address=checksum(row.get("to_addr")),
            verification_hash=row.get("verification_hash"),
            listing_id=opt("listing_id"),
            auction_id=opt("auction_id"),
            price_per_unit=opt("price_per_unit"),
            payment_ref=row.get("payment_ref"),
            certificate_id=opt("certificate_id"),
            beneficiary=row.get("beneficiary"),
            reason=row.get("reason"),
            requested_by=row.get("requested_by"),
            approved_by=row.get("approved_by"),
            approved_at=opt("approved_at"),
        )
