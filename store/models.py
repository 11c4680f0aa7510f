"""Indexer bookkeeping and the marketplace domain, as the indexer writes it and the API reads it.

Conventions: every row carries its chain; addresses and hashes are lowercase 0x-hex; amounts and on-chain ids
are uint256 (NUMERIC(78,0)); block timestamps are unix seconds. Event tables (EventRow) are immutable and
keyed by (chain, tx_hash, log_index); state tables (Versioned) keep one row per block range.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, PrimaryKeyConstraint, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from store.base import Base, EventRow, Versioned
from store.types import hexstr, int64, uint256

# --------------------------------------------------------------------------- indexer bookkeeping


class IndexerCursor(Base):
    """Last block whose rows are committed, written in the same transaction as those rows."""

    __tablename__ = "indexer_cursor"
    chain: Mapped[str] = mapped_column(primary_key=True)
    block_number: Mapped[int64]
    block_hash: Mapped[hexstr]
    finalized_number: Mapped[int64] = mapped_column(server_default=text("0"))
    # The node's block 0 when this chain was first indexed: a different chain behind the same name (a restarted
    # devnet, a misconfigured URL) is refused instead of being taken for a deep reorg.
    genesis_hash: Mapped[hexstr | None]
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class DataVersion(Base):
    """A counter per table that something other than the indexer writes and the API reads (a trigger bumps it in
    the writing transaction): with the indexer cursors, what the API's answer cache (gqlapi.answers) keys on."""

    __tablename__ = "data_version"
    source: Mapped[str] = mapped_column(primary_key=True)
    version: Mapped[int64] = mapped_column(server_default=text("0"))


class IndexedBlock(Base):
    """Recent block hashes (the unfinalized window and a little more), to detect and unwind reorgs."""

    __tablename__ = "indexed_block"
    chain: Mapped[str] = mapped_column(primary_key=True)
    number: Mapped[int64] = mapped_column(primary_key=True)
    hash: Mapped[hexstr]
    parent_hash: Mapped[hexstr]
    timestamp: Mapped[int64]


class IndexingError(Base):
    """A log the indexer could not decode or apply; it is skipped, recorded here and surfaced in `_meta`."""

    __tablename__ = "indexing_error"
    chain: Mapped[str] = mapped_column(primary_key=True)
    tx_hash: Mapped[hexstr] = mapped_column(primary_key=True)
    log_index: Mapped[int] = mapped_column(primary_key=True)
    block_number: Mapped[int64] = mapped_column(index=True)
    block_hash: Mapped[hexstr]
    contract: Mapped[str]
    message: Mapped[str]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


# --------------------------------------------------------------------------- immutable event rows


class LedgerEntry(Base, EventRow):
    """One credit movement (ERC-1155 TransferSingle/TransferBatch item): mint, transfer, burn, escrow in/out."""

    __tablename__ = "ledger_entry"
    # Keyed by position, not transaction (migration 0010): a backfill appends in block order, so the key's index grows at
    # its right edge instead of taking each transaction's rows at a random page. (block_number, log_index) is unique in
    # every family, as (tx_hash, log_index) is: EVM log indexes and Substrate event indexes count through the block,
    # and an Aptos "block" is one transaction (its version). The key also serves the reorg undo (chain, block_number
    # > A), so the table has no block_number index of its own.
    chain: Mapped[str] = mapped_column(sort_order=-10)
    tx_hash: Mapped[hexstr] = mapped_column(sort_order=-9)
    log_index: Mapped[int] = mapped_column(sort_order=-8)
    seq: Mapped[int] = mapped_column(server_default=text("0"))  # item index in TransferBatch
    batch_id: Mapped[uint256]
    operator: Mapped[hexstr]
    from_addr: Mapped[hexstr]
    to_addr: Mapped[hexstr]
    amount: Mapped[uint256]
    kind: Mapped[str]  # mint | transfer | burn | list | unlist | sale
    block_number: Mapped[int64] = mapped_column()
    __table_args__ = (
        PrimaryKeyConstraint("chain", "block_number", "log_index", "seq"),
        Index("ix_ledger_entry_batch", "chain", "batch_id", "block_number"),
        # The custody trace's two (migration 0011): the address leads and `chain` comes last. A cold backfill builds
        # them by sorting the whole ledger, and a leading column that never differs (one chain) still costs every
        # comparison a text comparison; last, it is compared only on ties. Queries still seek by address, batch and
        # block and check the chain inside the index.
        Index("ix_ledger_entry_sender", "from_addr", "block_number", "chain"),
        Index("ix_ledger_entry_receiver", "to_addr", "batch_id", "block_number", "chain"),  # provenance by batch
    )


class MintEvent(Base, EventRow):
    __tablename__ = "mint_event"
    to_addr: Mapped[hexstr]
    batch_id: Mapped[uint256]
    amount: Mapped[uint256]
    verification_hash: Mapped[hexstr]
    __table_args__ = (Index("ix_mint_event_batch", "chain", "batch_id"),)


class Retirement(Base, EventRow):
    """A retirement certificate (CarbonCredit.Retired, or an external market's retirement event)."""

    __tablename__ = "retirement"
    certificate_id: Mapped[uint256]
    holder: Mapped[hexstr]
    batch_id: Mapped[uint256]
    amount: Mapped[uint256]
    beneficiary: Mapped[str]
    reason: Mapped[str]
    # The registry serials this retirement consumed, first in first out within the batch (store.serials); NULL
    # when the batch has no parseable serial range or it is exhausted.
    serial_range: Mapped[str | None]
    # An external market's own references for this retirement (Toucan eventId and certificate NFT, ICR retirement
    # NFT, the Klima retirement that annotated it); NULL for carbonledger's own.
    market_ref: Mapped[str | None]
    __table_args__ = (
        Index("uq_retirement_certificate", "chain", "certificate_id", unique=True),
        Index("ix_retirement_holder", "chain", "holder"),
        Index("ix_retirement_batch", "chain", "batch_id"),
    )


class Trade(Base, EventRow):
    """Marketplace.Sold (an on-chain buy, payment_ref NULL, or an oracle settlement of a fiat payment) or an
    Auction.AuctionSettled with a winner (listing_id NULL, auction_id set)."""

    __tablename__ = "trade"
    listing_id: Mapped[uint256 | None]
    auction_id: Mapped[uint256 | None]
    buyer: Mapped[hexstr]
    seller: Mapped[hexstr]
    batch_id: Mapped[uint256]
    amount: Mapped[uint256]
    price_per_unit: Mapped[uint256]
    payment_ref: Mapped[str | None]
    __table_args__ = (
        Index("ix_trade_batch_block", "chain", "batch_id", "block_number"),
        Index("ix_trade_buyer", "chain", "buyer"),
        Index("ix_trade_seller", "chain", "seller"),
    )


class OrderEvent(Base, EventRow):
    """Escrow status history: one row per OrderCreated/Funded/Shipped/Delivered/Disputed/Resolved/Cancelled."""

    __tablename__ = "order_event"
    order_id: Mapped[uint256]
    event: Mapped[str]
    actor: Mapped[hexstr | None]
    payment_ref: Mapped[str | None]
    data: Mapped[dict] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    __table_args__ = (Index("ix_order_event_order", "chain", "order_id", "block_number"),)


class OffchainPayment(Base, EventRow):
    """A payment reference the chain accepted (Sold or Funded with a non-empty paymentRef)."""

    __tablename__ = "offchain_payment"
    payment_ref: Mapped[str]
    contract: Mapped[str]  # Marketplace | Escrow
    target_id: Mapped[uint256]  # listing id or order id
    __table_args__ = (Index("uq_offchain_payment_ref", "chain", "contract", "payment_ref", unique=True),)


class QRPaymentEvent(Base, EventRow):
    __tablename__ = "qr_payment"
    order_hash: Mapped[hexstr]
    payer: Mapped[hexstr]
    amount: Mapped[uint256]
    __table_args__ = (Index("ix_qr_payment_hash", "chain", "order_hash"),)


class QRSettlement(Base, EventRow):
    __tablename__ = "qr_settlement"
    order_data_hash: Mapped[hexstr]
    beneficiary: Mapped[hexstr]
    amount: Mapped[uint256]
    __table_args__ = (Index("uq_qr_settlement_hash", "chain", "order_data_hash", unique=True),)


class IoTAnchorEvent(Base, EventRow):
    __tablename__ = "iot_anchor"
    anchor_id: Mapped[uint256]
    root: Mapped[hexstr]
    leaf_count: Mapped[int64]
    window_start: Mapped[int64]
    window_end: Mapped[int64]
    quality_score: Mapped[int]
    __table_args__ = (Index("uq_iot_anchor_root", "chain", "root", unique=True),)


# --------------------------------------------------------------------------- versioned state


class CreditBatch(Base, Versioned):
    __tablename__ = "credit_batch"
    batch_id: Mapped[uint256] = mapped_column(primary_key=True)
    # carbonledger (our CarbonCredit) or the market protocol of an external token (chains.evm.markets), whose
    # batch id is int(token address) << 96 | token id.
    protocol: Mapped[str] = mapped_column(server_default=text("'carbonledger'"))
    project_id: Mapped[str]
    vintage: Mapped[int]
    methodology: Mapped[str]
    registry: Mapped[str]
    serial_number: Mapped[str]
    metadata_hash: Mapped[hexstr]
    created_block: Mapped[int64]
    created_tx: Mapped[hexstr]
    total_minted: Mapped[uint256]
    total_retired: Mapped[uint256]
    __table_args__ = (
        Index("ix_credit_batch_current", "chain", "batch_id", postgresql_where=text("valid_to IS NULL")),
        Index("ix_credit_batch_project", "chain", "project_id"),
        Index("ix_credit_batch_born", "chain", "valid_from"),  # reorg undo: versions born above the ancestor
    )


class Holding(Base, Versioned):
    """Per (owner, batch): tradable = wallet balance, listed = escrowed in active listings, retired = burned by owner."""

    __tablename__ = "holding"
    owner: Mapped[hexstr] = mapped_column(primary_key=True)
    batch_id: Mapped[uint256] = mapped_column(primary_key=True)
    tradable: Mapped[uint256]
    listed: Mapped[uint256]
    retired: Mapped[uint256]
    __table_args__ = (
        Index("ix_holding_owner_current", "chain", "owner", "batch_id", postgresql_where=text("valid_to IS NULL")),
        Index("ix_holding_owner_range", "chain", "owner", "valid_from"),
        Index("ix_holding_born", "chain", "valid_from"),  # reorg undo: versions born above the ancestor
    )


class Listing(Base, Versioned):
    __tablename__ = "listing"
    listing_id: Mapped[uint256] = mapped_column(primary_key=True)
    seller: Mapped[hexstr]
    batch_id: Mapped[uint256]
    price_per_unit: Mapped[uint256]
    amount_listed: Mapped[uint256]
    amount_remaining: Mapped[uint256]
    amount_sold: Mapped[uint256]
    status: Mapped[str]  # active | sold_out | cancelled
    created_block: Mapped[int64]
    created_tx: Mapped[hexstr]
    __table_args__ = (
        Index("ix_listing_current", "chain", "batch_id", "status", postgresql_where=text("valid_to IS NULL")),
        Index("ix_listing_seller", "chain", "seller"),
        Index("ix_listing_created_tx", "chain", "created_tx"),  # provenance: the listing a LIST step created
        Index("ix_listing_born", "chain", "valid_from"),  # reorg undo: versions born above the ancestor
    )


class AuctionBid(Base, EventRow):
    """Auction.BidPlaced: every bid, native (payment_ref NULL) or a fiat hold recorded by the oracle."""

    __tablename__ = "auction_bid"
    auction_id: Mapped[uint256]
    bidder: Mapped[hexstr]
    price_per_unit: Mapped[uint256]
    end_time: Mapped[int64]  # the auction's end after this bid (later when the bid extended it)
    payment_ref: Mapped[str | None]
    __table_args__ = (
        Index("ix_auction_bid_auction", "chain", "auction_id", "block_number"),
        Index("ix_auction_bid_bidder", "chain", "bidder"),
    )


class Auction(Base, Versioned):
    """An English auction of a credit lot; status active | settled (a winner) | unsold (the lot went back)."""

    __tablename__ = "auction"
    auction_id: Mapped[uint256] = mapped_column(primary_key=True)
    seller: Mapped[hexstr]
    batch_id: Mapped[uint256]
    amount: Mapped[uint256]
    reserve_price_per_unit: Mapped[uint256]
    min_increment_per_unit: Mapped[uint256]
    end_time: Mapped[int64]
    highest_bidder: Mapped[hexstr | None]
    highest_price_per_unit: Mapped[uint256 | None]
    bid_count: Mapped[int64]
    status: Mapped[str]
    winner: Mapped[hexstr | None]
    created_block: Mapped[int64]
    created_tx: Mapped[hexstr]
    __table_args__ = (
        Index("ix_auction_current", "chain", "status", "end_time", postgresql_where=text("valid_to IS NULL")),
        Index("ix_auction_seller", "chain", "seller"),
        Index("ix_auction_born", "chain", "valid_from"),  # reorg undo: versions born above the ancestor
    )


class EscrowOrder(Base, Versioned):
    __tablename__ = "escrow_order"
    order_id: Mapped[uint256] = mapped_column(primary_key=True)
    buyer: Mapped[hexstr]
    seller: Mapped[hexstr]
    amount: Mapped[uint256]
    metadata_hash: Mapped[hexstr]
    status: Mapped[str]  # created | funded | shipped | delivered | disputed | resolved | cancelled
    funded_offchain: Mapped[bool] = mapped_column(server_default=text("false"))
    payment_ref: Mapped[str | None]
    tracking_hash: Mapped[hexstr | None]
    refunded_buyer: Mapped[bool | None]
    created_block: Mapped[int64]
    created_tx: Mapped[hexstr]
    __table_args__ = (
        Index("ix_escrow_order_current", "chain", "order_id", postgresql_where=text("valid_to IS NULL")),
        Index("ix_escrow_order_buyer", "chain", "buyer"),
        Index("ix_escrow_order_seller", "chain", "seller"),
        Index("ix_escrow_order_born", "chain", "valid_from"),  # reorg undo: versions born above the ancestor
    )


EVENT_TABLES = [LedgerEntry, MintEvent, Retirement, Trade, OrderEvent, OffchainPayment, QRPaymentEvent, QRSettlement, IoTAnchorEvent,
                AuctionBid]
VERSIONED_TABLES = [CreditBatch, Holding, Listing, EscrowOrder, Auction]
