"""QRPayment: payments into an order hash and their settlement."""

from __future__ import annotations

from chains.base import ChainEvent
from indexer.context import Context
from indexer.registry import handler


@handler("QRPayment:Paid")
def paid(ev: ChainEvent, ctx: Context) -> None:
    a = ev.args
    ctx.insert("qr_payment", ev, order_hash=a["orderHash"], payer=a["payer"], amount=a["amount"])


@handler("QRPayment:Settled")
def settled(ev: ChainEvent, ctx: Context) -> None:
    a = ev.args
    ctx.insert("qr_settlement", ev, order_data_hash=a["orderDataHash"], beneficiary=a["beneficiary"], amount=a["amount"])
