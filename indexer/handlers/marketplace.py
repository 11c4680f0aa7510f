"""Marketplace: listings (versioned), trades, off-chain settlements, and the sellers' `listed` holdings."""

from __future__ import annotations

from chains.base import ChainEvent
from indexer.context import Context
from indexer.handlers.carbon_credit import holding
from indexer.registry import handler
from indexer.tables import HOLDING, LISTING

def _listed(ctx: Context, seller: str, batch_id: int, delta: int) -> None:
    h = holding(ctx, seller, batch_id)
    ctx.put(HOLDING, (seller, batch_id), {**h, "listed": h["listed"] + delta})


@handler("Marketplace:Listed")
def listed(ev: ChainEvent, ctx: Context) -> None:
    a = ev.args
    ctx.put(LISTING, (a["listingId"],), {
        "seller": a["seller"], "batch_id": a["batchId"], "price_per_unit": a["pricePerUnit"],
        "amount_listed": a["amount"], "amount_remaining": a["amount"], "amount_sold": 0, "status": "active",
        "created_block": ev.block_number, "created_tx": ev.tx_hash,
    })
    _listed(ctx, a["seller"], a["batchId"], a["amount"])


@handler("Marketplace:Sold")
def sold(ev: ChainEvent, ctx: Context) -> None:
    a = ev.args
    ref = a["paymentRef"] or None
    ctx.insert("trade", ev, listing_id=a["listingId"], auction_id=None, buyer=a["buyer"], seller=a["seller"], batch_id=a["batchId"],
               amount=a["amount"], price_per_unit=a["pricePerUnit"], payment_ref=ref)
    if ref is not None:
        ctx.insert("offchain_payment", ev, payment_ref=ref, contract="Marketplace", target_id=a["listingId"])
    ctx.resolve_pending(ev, "sale")
    lst = ctx.get(LISTING, (a["listingId"],))
    if lst is None:
        ctx.error(ev, f"Sold for unknown listing {a['listingId']}")
        return
    remaining = lst["amount_remaining"] - a["amount"]
    ctx.put(LISTING, (a["listingId"],), {**lst, "amount_remaining": remaining,
                                         "amount_sold": lst["amount_sold"] + a["amount"],
                                         "status": "sold_out" if remaining == 0 else "active"})
    _listed(ctx, a["seller"], a["batchId"], -a["amount"])


@handler("Marketplace:Cancelled")
def cancelled(ev: ChainEvent, ctx: Context) -> None:
    ctx.resolve_pending(ev, "unlist")
    lst = ctx.get(LISTING, (ev.args["listingId"],))
    if lst is None:
        ctx.error(ev, f"Cancelled for unknown listing {ev.args['listingId']}")
        return
    ctx.put(LISTING, (ev.args["listingId"],), {**lst, "amount_remaining": 0, "status": "cancelled"})
    _listed(ctx, lst["seller"], lst["batch_id"], -lst["amount_remaining"])
