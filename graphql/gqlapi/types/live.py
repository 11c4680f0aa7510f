"""Messages of the live subscriptions: each names the block it is true at; `Retracted` undoes blocks a reorg removed."""

from __future__ import annotations

from typing import Annotated, Any

import strawberry

from gqlapi.convert import checksum
from gqlapi.scalars import BigInt, BlockNumber, Timestamp
from gqlapi.types.meta import ChainMeta


@strawberry.input(description="Where a resuming subscription starts: after block `number` (the last block the client "
                  "was sent). With `hash` (that block's hash), a block a reorg replaced while the client was away is "
                  "refused (SINCE_REORGED: resume from an earlier block) instead of resumed from silently.")
class SinceInput:
    number: int | None = strawberry.field(default=None, description="The last block the client was sent.")
    version: BlockNumber | None = strawberry.field(default=None, description="The same as a 64-bit BlockNumber (an "
                                                   "Aptos ledger version past 2**31). Give this or `number`.")
    hash: str | None = None

    def at(self) -> int:
        from gqlapi.types.block import block_arg

        return block_arg(self.number, self.version, "since")


@strawberry.type(description="The block a live message is true at.")
class LiveBlock:
    chain: str
    number: BlockNumber
    hash: str | None = strawberry.field(description="Null where the message comes from a state version, whose "
                                        "block hash is not kept (portfolio changes).")


def _at(row: dict[str, Any]) -> LiveBlock:
    return LiveBlock(chain=row["chain"], number=int(row["block_number"]), hash=row.get("block_hash"))


@strawberry.type(description="A reorg removed blocks fromBlock..toBlock of `chain`: every message this subscription "
                 "sent for those blocks no longer holds (the new branch's blocks follow as new messages).")
class Retracted:
    chain: str
    from_block: BlockNumber
    to_block: BlockNumber
    ancestor_hash: str = strawberry.field(description="Hash of block fromBlock - 1, the common ancestor kept.")


@strawberry.type(description="A block (or a backfilled range ending at it) was indexed.")
class BlockIndexed:
    block: LiveBlock
    from_block: BlockNumber = strawberry.field(description="First block of the commit (equals block.number when following "
                                       "the head; lower for a backfilled range).")
    kinds: list[str] = strawberry.field(description="Tables the commit changed (e.g. order_event, holding).")
    meta: ChainMeta | None = strawberry.field(name="_meta", description="The chain's `_meta` just after this commit.")


@strawberry.type(description="An escrow order's status event (created, funded, shipped, delivered, disputed, "
                 "resolved, cancelled).")
class OrderStatusChanged:
    block: LiveBlock
    order_id: BigInt
    event: str
    buyer: str | None
    seller: str | None
    actor: str | None
    payment_ref: str | None
    tx_hash: str
    log_index: int

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "OrderStatusChanged":
        return cls(block=_at(row), order_id=int(row["order_id"]), event=row["event"], buyer=checksum(row["buyer"]),
                   seller=checksum(row["seller"]), actor=checksum(row["actor"]), payment_ref=row["payment_ref"],
                   tx_hash=row["tx_hash"], log_index=row["log_index"])


@strawberry.type(description="A holding of `owner` changed: its new balances as of `block`.")
class PortfolioChanged:
    block: LiveBlock
    owner: str
    batch_id: BigInt
    tradable: BigInt
    listed: BigInt
    retired: BigInt

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "PortfolioChanged":
        return cls(block=_at(row), owner=checksum(row["owner"]), batch_id=int(row["batch_id"]),  # type: ignore[arg-type]
                   tradable=int(row["tradable"]), listed=int(row["listed"]), retired=int(row["retired"]))


@strawberry.type(description="A retirement certificate was issued.")
class CertificateIssued:
    block: LiveBlock
    certificate_id: BigInt
    holder: str
    batch_id: BigInt
    amount: BigInt
    beneficiary: str
    reason: str
    tx_hash: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "CertificateIssued":
        return cls(block=_at(row), certificate_id=int(row["certificate_id"]), holder=checksum(row["holder"]),  # type: ignore[arg-type]
                   batch_id=int(row["batch_id"]), amount=int(row["amount"]), beneficiary=row["beneficiary"],
                   reason=row["reason"], tx_hash=row["tx_hash"])


@strawberry.type(description="A marketplace sale (an on-chain buy, or an oracle settlement: paymentRef).")
class TradeExecuted:
    block: LiveBlock
    listing_id: BigInt | None = strawberry.field(description="The listing sold from (null for an auction).")
    auction_id: BigInt | None = strawberry.field(description="The auction settled (null for a listing sale).")
    buyer: str
    seller: str
    batch_id: BigInt
    amount: BigInt
    price_per_unit: BigInt
    payment_ref: str | None
    tx_hash: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "TradeExecuted":
        opt = lambda k: None if row.get(k) is None else int(row[k])  # noqa: E731
        return cls(block=_at(row), listing_id=opt("listing_id"), auction_id=opt("auction_id"),
                   buyer=checksum(row["buyer"]),  # type: ignore[arg-type]
                   seller=checksum(row["seller"]), batch_id=int(row["batch_id"]), amount=int(row["amount"]),  # type: ignore[arg-type]
                   price_per_unit=int(row["price_per_unit"]), payment_ref=row["payment_ref"], tx_hash=row["tx_hash"])


@strawberry.type(description="An auction changed: created, bid on (highest bid and end after it) or settled (winner, or "
                 "unsold: the lot went back to the seller).")
class AuctionChanged:
    block: LiveBlock
    auction_id: BigInt
    seller: str
    batch_id: BigInt
    amount: BigInt
    status: str = strawberry.field(description="active | settled | unsold")
    highest_bidder: str | None
    highest_price_per_unit: BigInt | None
    bid_count: int
    ends_at: Timestamp
    winner: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "AuctionChanged":
        return cls(block=_at(row), auction_id=int(row["auction_id"]), seller=checksum(row["seller"]),  # type: ignore[arg-type]
                   batch_id=int(row["batch_id"]), amount=int(row["amount"]), status=row["status"],
                   highest_bidder=checksum(row["highest_bidder"]),
                   highest_price_per_unit=None if row["highest_price_per_unit"] is None else int(row["highest_price_per_unit"]),
                   bid_count=int(row["bid_count"]), ends_at=int(row["end_time"]), winner=checksum(row["winner"]))


@strawberry.type(description="An oracle write intent changed status (pending, signed, sent, confirmed, failed).")
class IntentStatusChanged:
    key: str
    chain: str
    status: str
    tx_hash: str | None = strawberry.field(description="The write's transaction; only to subscribers that presented "
                                           "api.live_token (otherwise null: anyone may ask about any key).")
    block_number: BlockNumber | None = strawberry.field(description="The block the write was mined in, once confirmed; only "
                                                "to subscribers that presented api.live_token.")

    @classmethod
    def from_row(cls, row: dict[str, Any], detailed: bool = False) -> "IntentStatusChanged":
        """`detailed`: the subscriber authenticated (api.live_token), so the transaction is shown too."""
        return cls(key=row["key"], chain=row["chain"], status=row["status"],
                   tx_hash=row.get("tx") if detailed else None, block_number=row.get("block") if detailed else None)


BlockMessage = Annotated[BlockIndexed | Retracted, strawberry.union("BlockMessage")]
OrderStatusMessage = Annotated[OrderStatusChanged | Retracted, strawberry.union("OrderStatusMessage")]
PortfolioMessage = Annotated[PortfolioChanged | Retracted, strawberry.union("PortfolioMessage")]
CertificateMessage = Annotated[CertificateIssued | Retracted, strawberry.union("CertificateMessage")]
TradeMessage = Annotated[TradeExecuted | Retracted, strawberry.union("TradeMessage")]
AuctionMessage = Annotated[AuctionChanged | Retracted, strawberry.union("AuctionMessage")]
