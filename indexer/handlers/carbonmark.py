"""Carbonmark (protocol carbonmark): listings of ERC-20 and ERC-1155 credits, in the same listing and trade
tables as carbonledger's Marketplace.

A listing id is the bytes32 `id` as an integer; its batch is `int(token) << 96 | tokenId` (chains.evm.markets),
the same batch the token's own handler (TCO2, ICR) writes. Carbonmark does not escrow: listed credits stay in the
seller's wallet (holdings keep them `tradable`, `listed` is not touched) and a fill moves them seller to buyer,
so a fill's trade row is written and the token movement of the same transaction before it, seller to buyer of
that batch, becomes kind `sale`.
"""

from __future__ import annotations

from chains.base import ChainEvent
from indexer.context import Context
from indexer.handlers.external import batch_of
from indexer.registry import handler
from indexer.tables import EVENTS, LISTING

_LEDGER = EVENTS["ledger_entry"].columns


def _id(ev: ChainEvent) -> int:
    return int(ev.args["id"], 16)


def _listing(ctx: Context, ev: ChainEvent) -> dict | None:
    lst = ctx.get(LISTING, (_id(ev),))
    if lst is None:
        ctx.error(ev, f"{ev.name} for unknown listing {ev.args['id']}")
    return lst


@handler("Carbonmark:ListingCreated")
def listing_created(ev: ChainEvent, ctx: Context) -> None:
    a = ev.args
    batch = batch_of(ctx, ev, a["token"], a["tokenId"])
    if batch is None:
        return
    ctx.put(LISTING, (_id(ev),), {
        "seller": a["account"], "batch_id": batch, "price_per_unit": a["price"], "amount_listed": a["amount"],
        "amount_remaining": a["amount"], "amount_sold": 0, "status": "active" if a["amount"] else "sold_out",
        "created_block": ev.block_number, "created_tx": ev.tx_hash,
    })


@handler("Carbonmark:ListingUpdated")
def listing_updated(ev: ChainEvent, ctx: Context) -> None:
    lst = _listing(ctx, ev)
    if lst is not None:
        new = ev.args["newAmount"]
        ctx.put(LISTING, (_id(ev),), {**lst, "amount_remaining": new, "amount_listed": lst["amount_sold"] + new,
                                      "price_per_unit": ev.args["newUnitPrice"],
                                      "status": "active" if new else "sold_out"})


@handler("Carbonmark:ListingFilled")
def listing_filled(ev: ChainEvent, ctx: Context) -> None:
    a = ev.args
    lst = _listing(ctx, ev)
    if lst is None:
        return
    ctx.insert("trade", ev, listing_id=_id(ev), auction_id=None, buyer=a["account"], seller=lst["seller"], batch_id=lst["batch_id"],
               amount=a["amount"], price_per_unit=lst["price_per_unit"], payment_ref=None)
    for row in ctx.tx_rows("ledger_entry", ev):
        got = dict(zip(_LEDGER, row))
        if (got["batch_id"], got["from_addr"], got["to_addr"], got["kind"]) == (
                lst["batch_id"], lst["seller"], a["account"], "transfer"):
            ctx.amend("ledger_entry", row, "kind", "sale")
    remaining = max(lst["amount_remaining"] - a["amount"], 0)
    ctx.put(LISTING, (_id(ev),), {**lst, "amount_remaining": remaining, "amount_sold": lst["amount_sold"] + a["amount"],
                                  "status": "active" if remaining else "sold_out"})


@handler("Carbonmark:ListingCancelled")
def listing_cancelled(ev: ChainEvent, ctx: Context) -> None:
    lst = _listing(ctx, ev)
    if lst is not None:
        ctx.put(LISTING, (_id(ev),), {**lst, "amount_remaining": 0, "status": "cancelled"})
