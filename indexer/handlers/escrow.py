"""Escrow: the order lifecycle (versioned escrow_order) and its status history (order_event)."""

from __future__ import annotations

from chains.base import ChainEvent
from indexer.context import Context
from indexer.registry import handler
from indexer.tables import ESCROW_ORDER


def _history(ctx: Context, ev: ChainEvent, actor: str | None = None, ref: str | None = None, **data: object) -> None:
    ctx.insert("order_event", ev, order_id=ev.args["orderId"], event=ev.name, actor=actor, payment_ref=ref, data=data)


def _update(ctx: Context, ev: ChainEvent, **changes: object) -> None:
    key = (ev.args["orderId"],)
    order = ctx.get(ESCROW_ORDER, key)
    if order is None:
        ctx.error(ev, f"{ev.name} for unknown order {ev.args['orderId']}")
        return
    ctx.put(ESCROW_ORDER, key, {**order, **changes})


@handler("Escrow:OrderCreated")
def order_created(ev: ChainEvent, ctx: Context) -> None:
    a = ev.args
    _history(ctx, ev, a["buyer"], amount=str(a["amount"]), seller=a["seller"])
    ctx.put(ESCROW_ORDER, (a["orderId"],), {
        "buyer": a["buyer"], "seller": a["seller"], "amount": a["amount"], "metadata_hash": a["metadataHash"],
        "status": "created", "funded_offchain": False, "payment_ref": None, "tracking_hash": None,
        "refunded_buyer": None, "created_block": ev.block_number, "created_tx": ev.tx_hash,
    })


@handler("Escrow:Funded")
def funded(ev: ChainEvent, ctx: Context) -> None:
    a = ev.args
    ref = a["paymentRef"] or None
    _history(ctx, ev, a["payer"], ref, amount=str(a["amount"]))
    if ref is not None:
        ctx.insert("offchain_payment", ev, payment_ref=ref, contract="Escrow", target_id=a["orderId"])
    _update(ctx, ev, status="funded", funded_offchain=ref is not None, payment_ref=ref)


@handler("Escrow:Shipped")
def shipped(ev: ChainEvent, ctx: Context) -> None:
    _history(ctx, ev, trackingHash=ev.args["trackingHash"])
    _update(ctx, ev, status="shipped", tracking_hash=ev.args["trackingHash"])


@handler("Escrow:Delivered")
def delivered(ev: ChainEvent, ctx: Context) -> None:
    _history(ctx, ev)
    _update(ctx, ev, status="delivered")


@handler("Escrow:Disputed")
def disputed(ev: ChainEvent, ctx: Context) -> None:
    _history(ctx, ev, ev.args["by"], reason=ev.args["reason"])
    _update(ctx, ev, status="disputed")


@handler("Escrow:Resolved")
def resolved(ev: ChainEvent, ctx: Context) -> None:
    _history(ctx, ev, refundedBuyer=ev.args["refundedBuyer"])
    _update(ctx, ev, status="resolved", refunded_buyer=ev.args["refundedBuyer"])


@handler("Escrow:Cancelled")
def cancelled(ev: ChainEvent, ctx: Context) -> None:
    _history(ctx, ev)
    _update(ctx, ev, status="cancelled")
