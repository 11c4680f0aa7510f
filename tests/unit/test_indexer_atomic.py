"""An event applies all or nothing: a handler that raises partway leaves the buffers as if it were skipped."""

from __future__ import annotations

import copy

from chains.base import ChainEvent
from indexer.context import Context, StateCache
from indexer.registry import load_handlers
from indexer.sync import ChainSync
from indexer.tables import EVENTS, HOLDING, LISTING

ZERO = "0x" + "0" * 40
MARKET, ALICE, BOB = "0x" + "aa" * 20, "0x" + "a1" * 20, "0x" + "b0" * 20
KIND = EVENTS["ledger_entry"].columns.index("kind")


def ev(contract, name, block, tx, idx, **args):
    return ChainEvent("dev", contract, name, args, block, f"0xb{block}", 1000 + block, tx, idx, "0x00")


def ts(block, tx, idx, frm, to, id_, value):
    return ev("CarbonCredit", "TransferSingle", block, tx, idx, operator=ALICE, **{"from": frm, "to": to}, id=id_, value=value)


def boom(e: ChainEvent, ctx: Context) -> None:
    """Touches every kind of buffer the Context has, then fails."""
    ctx.put(HOLDING, (ALICE, 1), {"tradable": 10**6, "listed": 0, "retired": 0})  # same block: replaces a version
    ctx.put(HOLDING, (ALICE, 1), {"tradable": 10**7, "listed": 0, "retired": 0})
    ctx.put(HOLDING, (BOB, 9), {"tradable": 1, "listed": 0, "retired": 0})  # a new entity
    ctx.put(LISTING, (1,), {**ctx.get(LISTING, (1,)), "status": "bogus"})  # a new block's version of an entity
    ctx.resolve_pending(e, "sale")  # names ledger rows of an earlier event of this tx
    row = ctx.insert("ledger_entry", e, seq=0, batch_id=1, operator=ALICE, from_addr=MARKET, to_addr=BOB, amount=1,
                     kind="transfer")
    ctx.mark_pending(e, row)
    ctx.error(e, "soft error before the crash")
    raise RuntimeError("handler bug")


def _events(with_boom: bool):
    evs = [
        ev("CarbonCredit", "BatchCreated", 1, "0x01", 0, batchId=1, projectId="P", vintage=2024, methodology="M",
           registry="R", serialNumber="S", metadataHash="0x" + "00" * 32),
        ts(2, "0x02", 0, ZERO, ALICE, 1, 100),
        ts(3, "0x03", 0, ALICE, MARKET, 1, 40),
        ev("Marketplace", "Listed", 3, "0x03", 1, listingId=1, seller=ALICE, batchId=1, amount=40, pricePerUnit=5),
        ts(4, "0x04", 0, MARKET, BOB, 1, 15),  # pending: the Sold after it names it
    ]
    if with_boom:
        evs.append(ev("Test", "Boom", 4, "0x04", 1))
    evs += [
        ev("Marketplace", "Sold", 4, "0x04", 2, listingId=1, buyer=BOB, seller=ALICE, batchId=1, amount=15,
           pricePerUnit=5, paymentRef=""),
        ts(5, "0x05", 0, ALICE, BOB, 1, 5),
    ]
    return evs


def _sync() -> ChainSync:
    s = ChainSync("dev", None, "postgresql://unused@127.0.0.1/x", addresses={"Marketplace": MARKET}, start_block=0,
                  finality_depth=5, prefetch=False)
    s.handlers = {**load_handlers(), "Test:Boom": boom}
    return s


def _state(ctx: Context):
    return copy.deepcopy((ctx.rows, ctx.overlay, ctx.versions, ctx.marks))


def test_a_handler_that_raises_leaves_state_identical_to_skipping_the_event():
    s = _sync()
    failed, skipped = Context("dev", StateCache(), s.addresses), Context("dev", StateCache(), s.addresses)
    s._apply(failed, _events(True))
    s._apply(skipped, _events(False))
    errors = failed.rows["indexing_error"]
    assert len(errors) == 1
    chain, tx, log_index, block, block_hash, contract, message = errors[0]
    assert (chain, tx, log_index, block, block_hash, contract) == ("dev", "0x04", 1, 4, "0xb4", "Test")
    assert "Test:Boom" in message and "RuntimeError: handler bug" in message
    failed.rows["indexing_error"] = []
    assert _state(failed) == _state(skipped)
    assert [r[KIND] for r in failed.rows["ledger_entry"]] == ["mint", "list", "sale", "transfer"]
    assert failed.get(HOLDING, (BOB, 9)) is None and failed.get(LISTING, (1,))["status"] == "active"
    failed.commit_to_cache()
    assert failed.cache.get(HOLDING, (BOB, 9)) is None


def test_rollback_of_a_first_event_in_an_empty_context():
    s = _sync()
    ctx = Context("dev", StateCache(), s.addresses)
    s.handlers["Test:Boom2"] = lambda e, c: (c.put(HOLDING, (ALICE, 2), {"tradable": 1, "listed": 0, "retired": 0}),
                                             c.insert("qr_payment", e, order_hash="0x", payer=ALICE, amount=1), 1 / 0)
    s._apply(ctx, [ev("Test", "Boom2", 1, "0x1", 0)])
    assert ctx.versions[HOLDING] == {} and ctx.overlay[HOLDING] == {} and ctx.rows["qr_payment"] == []
    assert "ZeroDivisionError" in ctx.rows["indexing_error"][0][-1]
