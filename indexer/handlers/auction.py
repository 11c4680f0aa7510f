"""Auction: English auctions (versioned `auction` rows), every bid (`auction_bid`), and a settled auction's trade.

Credits escrowed by an auction are the seller's `listed` amount, as for a marketplace listing (carbon_credit.py
classifies the movements: into the Auction contract is a LIST, out of it an AUCTION_SETTLED when the settlement
has a winner, an UNLIST when the lot went back). A settlement with a winner is a trade like a sale (listing_id
NULL, auction_id set), so trades, candles and marketStats' VWAP count it.
"""

from __future__ import annotations

from chains.base import ChainEvent
from indexer.context import Context
from indexer.handlers.carbon_credit import ZERO, bump
from indexer.registry import handler
from indexer.tables import AUCTION



@handler("Auction:AuctionCreated")
def created(ev: ChainEvent, ctx: Context) -> None:
    a = ev.args
    ctx.put(AUCTION, (a["auctionId"],), {
        "seller": a["seller"], "batch_id": a["batchId"], "amount": a["amount"],
        "reserve_price_per_unit": a["reservePricePerUnit"], "min_increment_per_unit": a["minIncrementPerUnit"],
        "end_time": a["endTime"], "highest_bidder": None, "highest_price_per_unit": None, "bid_count": 0,
        "status": "active", "winner": None, "created_block": ev.block_number, "created_tx": ev.tx_hash,
    })
    bump(ctx, a["seller"], a["batchId"], "listed", a["amount"])


@handler("Auction:BidPlaced")
def bid_placed(ev: ChainEvent, ctx: Context) -> None:
    a = ev.args
    ref = a["paymentRef"] or None
    ctx.insert("auction_bid", ev, auction_id=a["auctionId"], bidder=a["bidder"], price_per_unit=a["pricePerUnit"],
               end_time=a["endTime"], payment_ref=ref)
    if ref is not None:
        ctx.insert("offchain_payment", ev, payment_ref=ref, contract="Auction", target_id=a["auctionId"])
    lot = ctx.get(AUCTION, (a["auctionId"],))
    if lot is None:
        ctx.error(ev, f"BidPlaced for unknown auction {a['auctionId']}")
        return
    ctx.put(AUCTION, (a["auctionId"],), {**lot, "highest_bidder": a["bidder"], "highest_price_per_unit": a["pricePerUnit"],
                                         "bid_count": lot["bid_count"] + 1, "end_time": a["endTime"]})


@handler("Auction:AuctionSettled")
def settled(ev: ChainEvent, ctx: Context) -> None:
    a = ev.args
    sold = a["winner"] != ZERO
    ctx.resolve_pending(ev, "auction_settled" if sold else "unlist")
    if sold:
        ctx.insert("trade", ev, listing_id=None, auction_id=a["auctionId"], buyer=a["winner"], seller=a["seller"],
                   batch_id=a["batchId"], amount=a["amount"], price_per_unit=a["pricePerUnit"],
                   payment_ref=a["paymentRef"] or None)
    lot = ctx.get(AUCTION, (a["auctionId"],))
    if lot is None:
        ctx.error(ev, f"AuctionSettled for unknown auction {a['auctionId']}")
        return
    ctx.put(AUCTION, (a["auctionId"],), {**lot, "status": "settled" if sold else "unsold",
                                         "winner": a["winner"] if sold else None})
    bump(ctx, a["seller"], a["batchId"], "listed", -a["amount"])


@handler("Auction:LotUnclaimed")
def lot_unclaimed(ev: ChainEvent, ctx: Context) -> None:
    """The winner refused the lot at settlement: it stays in the contract (no transfer, so no holding moves) until
    the winner claims it; the settlement and its trade stand."""


@handler("Auction:LotClaimed")
def lot_claimed(ev: ChainEvent, ctx: Context) -> None:
    """The winner took an unclaimed lot: the transfer out of the contract (a ledger transfer) moves the holding."""


@handler("Auction:Withdrawn")
def withdrawn(ev: ChainEvent, ctx: Context) -> None:
    """A payout in native currency (an outbid bid, a seller's proceeds): no credit state changes."""


@handler("Auction:ExtensionWindowSet")
def extension_window_set(ev: ChainEvent, ctx: Context) -> None:
    """An admin setting: no indexed state (the bids carry each auction's resulting end time)."""
