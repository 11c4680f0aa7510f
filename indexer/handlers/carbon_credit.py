"""CarbonCredit: batches, mints, ERC-1155 movements (ledger + holdings) and retirements.

Holdings: `tradable` is the owner's wallet balance. The Marketplace contract's own balance is not an owner
row: credits it holds are the sellers' `listed` amounts (see marketplace.py), so a listing moves credits from
tradable to listed of the same owner instead of to a pseudo-owner.
"""

from __future__ import annotations

from chains.base import ChainEvent
from indexer.context import Context
from indexer.registry import handler
from indexer.tables import CREDIT_BATCH, HOLDING, LEDGER_KINDS_PENDING
from store.serials import consumed_range

ZERO = "0x" + "0" * 40


_EMPTY = {"tradable": 0, "listed": 0, "retired": 0}  # a holding nobody has had yet (Context.add copies it)


def bump(ctx: Context, owner: str, batch_id: int, field: str, delta: int) -> None:
    """Add `delta` to one field (tradable, listed, retired) of an owner's holding of a batch."""
    ctx.add(HOLDING, (owner, batch_id), field, delta, _EMPTY)


def _move(ctx: Context, ev: ChainEvent, seq: int, batch_id: int, value: int) -> None:
    a = ev.args
    src, dst = a["from"], a["to"]
    escrows = (ctx.addresses.get("Marketplace"), ctx.addresses.get("Auction"))  # they hold credits for sellers
    pending = False
    if src == ZERO:
        kind = "mint"
    elif dst == ZERO:
        kind = "burn"
    elif dst in escrows:
        kind = "list"
    elif src in escrows:
        # Sold, AuctionSettled or Cancelled later in the same tx decides: sale | auction_settled | unlist
        kind, pending = LEDGER_KINDS_PENDING, True
    else:
        kind = "transfer"  # a plain transfer is final (never relabelled by a sale later in its tx)
    row = ctx.insert("ledger_entry", ev, seq=seq, batch_id=batch_id, operator=a["operator"], from_addr=src,
                     to_addr=dst, amount=value, kind=kind)
    if pending:
        ctx.mark_pending(ev, row)
    if src != ZERO and src not in escrows:
        bump(ctx, src, batch_id, "tradable", -value)
    if dst != ZERO and dst not in escrows:
        bump(ctx, dst, batch_id, "tradable", value)


@handler("CarbonCredit:TransferSingle")
def transfer_single(ev: ChainEvent, ctx: Context) -> None:
    _move(ctx, ev, 0, ev.args["id"], ev.args["value"])


@handler("CarbonCredit:TransferBatch")
def transfer_batch(ev: ChainEvent, ctx: Context) -> None:
    ids, values = ev.args["ids"], ev.args["values"]
    if len(ids) != len(values):
        ctx.error(ev, f"TransferBatch: {len(ids)} ids but {len(values)} values")
        return
    for seq, (batch_id, value) in enumerate(zip(ids, values)):
        _move(ctx, ev, seq, batch_id, value)


@handler("CarbonCredit:BatchCreated")
def batch_created(ev: ChainEvent, ctx: Context) -> None:
    a = ev.args
    ctx.put(CREDIT_BATCH, (a["batchId"],), {
        "protocol": "carbonledger", "project_id": a["projectId"], "vintage": a["vintage"], "methodology": a["methodology"],
        "registry": a["registry"], "serial_number": a["serialNumber"], "metadata_hash": a["metadataHash"],
        "created_block": ev.block_number, "created_tx": ev.tx_hash, "total_minted": 0, "total_retired": 0,
    })


def _batch_add(ctx: Context, ev: ChainEvent, batch_id: int, field: str, amount: int) -> None:
    b = ctx.get(CREDIT_BATCH, (batch_id,))
    if b is None:
        ctx.error(ev, f"{ev.name} for unknown batch {batch_id}")
        return
    ctx.put(CREDIT_BATCH, (batch_id,), {**b, field: b[field] + amount})


@handler("CarbonCredit:Minted")
def minted(ev: ChainEvent, ctx: Context) -> None:
    a = ev.args
    ctx.insert("mint_event", ev, to_addr=a["to"], batch_id=a["batchId"], amount=a["amount"],
               verification_hash=a["verificationHash"])
    _batch_add(ctx, ev, a["batchId"], "total_minted", a["amount"])


@handler("CarbonCredit:Retired")
def retired(ev: ChainEvent, ctx: Context) -> None:
    a = ev.args
    record_retirement(ctx, ev, a["certificateId"], a["holder"], a["batchId"], a["amount"], a["beneficiary"], a["reason"])


def record_retirement(ctx: Context, ev: ChainEvent, certificate_id: int, holder: str, batch_id: int, amount: int,
                      beneficiary: str, reason: str, market_ref: str | None = None) -> list:
    """A certificate row with the registry serials it consumed (store.serials: FIFO within the batch), the
    holder's retired amount and the batch's total; returns the row."""
    b = ctx.get(CREDIT_BATCH, (batch_id,))
    unit = ctx.labels.get(batch_id, {}).get("unit", 1)  # base units per serial: 1 for ours, 10**decimals for tokens
    serials = consumed_range(b["serial_number"], b["total_retired"], amount, unit) if b is not None else None
    row = ctx.insert("retirement", ev, certificate_id=certificate_id, holder=holder, batch_id=batch_id, amount=amount,
                     beneficiary=beneficiary, reason=reason, serial_range=serials, market_ref=market_ref)
    bump(ctx, holder, batch_id, "retired", amount)
    _batch_add(ctx, ev, batch_id, "total_retired", amount)
    return row
