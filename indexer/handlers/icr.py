"""ICR project contracts (protocol icr_project): ERC-1155, one token id per vintage.

Batch id `int(contract) << 96 | token id` (chains.evm.markets); TransferSingle/TransferBatch are ledger rows and
holdings like CarbonCredit's; `RetiredVintage(account, tokenId, amount, nftTokenId, data)` (after the burn in the
same transaction) is a certificate of `account`, the ICR retirement NFT id kept in `market_ref`.
"""

from __future__ import annotations

from chains.base import ChainEvent
from indexer.context import Context
from indexer.handlers.external import batch_of, move, retire
from indexer.registry import handler

ICR = "icr_project"


def _move(ctx: Context, ev: ChainEvent, seq: int, token_id: int, value: int) -> None:
    batch = batch_of(ctx, ev, ev.address, token_id)
    if batch is not None:
        a = ev.args
        move(ctx, ev, ICR, seq, batch, a["operator"], a["from"], a["to"], value)


@handler("ICRProjectContract:TransferSingle")
def transfer_single(ev: ChainEvent, ctx: Context) -> None:
    _move(ctx, ev, 0, ev.args["id"], ev.args["value"])


@handler("ICRProjectContract:TransferBatch")
def transfer_batch(ev: ChainEvent, ctx: Context) -> None:
    ids, values = ev.args["ids"], ev.args["values"]
    if len(ids) != len(values):
        ctx.error(ev, f"TransferBatch: {len(ids)} ids but {len(values)} values")
        return
    for seq, (token_id, value) in enumerate(zip(ids, values)):
        _move(ctx, ev, seq, token_id, value)


@handler("ICRProjectContract:RetiredVintage")
def retired_vintage(ev: ChainEvent, ctx: Context) -> None:
    a = ev.args
    batch = batch_of(ctx, ev, ev.address, a["tokenId"])
    if batch is not None:
        retire(ctx, ev, ICR, a["account"], batch, a["amount"], market_ref=f"ICR retirement NFT {a['nftTokenId']}")
