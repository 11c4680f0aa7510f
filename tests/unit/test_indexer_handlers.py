"""Handlers on a Context without a database: holdings semantics, ledger kinds, versions per block."""

from __future__ import annotations

import pytest

from chains.base import ChainEvent, UndecodableLog
from indexer.context import Context, StateCache
from indexer.registry import handler, load_handlers
from indexer.tables import EVENTS

ZERO = "0x" + "0" * 40
MARKET, ALICE, BOB = "0x" + "aa" * 20, "0x" + "a1" * 20, "0x" + "b0" * 20
KIND = EVENTS["ledger_entry"].columns.index("kind")
H = load_handlers()


def ev(contract, name, block, tx, idx, **args):
    return ChainEvent("dev", contract, name, args, block, f"0xb{block}", 1000 + block, tx, idx, "0x00")


def apply(ctx, events):
    for e in events:
        ctx.block = e.block_number
        H[e.key](e, ctx)


def ts(block, tx, idx, frm, to, id_, value):
    return ev("CarbonCredit", "TransferSingle", block, tx, idx, operator=ALICE, **{"from": frm, "to": to}, id=id_, value=value)


@pytest.fixture()
def ctx():
    return Context("dev", StateCache(), {"Marketplace": MARKET.upper().replace("0X", "0x")})


def test_every_protocol_event_has_a_handler():
    from chains.evm.artifacts import PROTOCOL_CONTRACTS, abi

    wanted = {f"{c}:{i['name']}" for c in PROTOCOL_CONTRACTS for i in abi(c) if i.get("type") == "event"
              and not i["name"].startswith(("Role", "ApprovalForAll", "URI"))}
    assert wanted <= set(H), wanted - set(H)


def test_list_sell_cancel_moves_tradable_to_listed_and_names_ledger_kinds(ctx):
    apply(ctx, [
        ev("CarbonCredit", "BatchCreated", 1, "0x01", 0, batchId=1, projectId="P", vintage=2024, methodology="M",
           registry="R", serialNumber="S", metadataHash="0x" + "00" * 32),
        ts(2, "0x02", 0, ZERO, ALICE, 1, 100),
        ev("CarbonCredit", "Minted", 2, "0x02", 1, to=ALICE, batchId=1, amount=100, verificationHash="0x" + "11" * 32),
        ts(3, "0x03", 0, ALICE, MARKET, 1, 40),
        ev("Marketplace", "Listed", 3, "0x03", 1, listingId=1, seller=ALICE, batchId=1, amount=40, pricePerUnit=5),
        ts(4, "0x04", 0, MARKET, BOB, 1, 15),
        ev("Marketplace", "Sold", 4, "0x04", 1, listingId=1, buyer=BOB, seller=ALICE, batchId=1, amount=15,
           pricePerUnit=5, paymentRef="pi_1"),
        ts(5, "0x05", 0, MARKET, ALICE, 1, 25),
        ev("Marketplace", "Cancelled", 5, "0x05", 1, listingId=1),
        ts(6, "0x06", 0, BOB, ZERO, 1, 5),
        ev("CarbonCredit", "Retired", 6, "0x06", 1, certificateId=1, holder=BOB, batchId=1, amount=5, beneficiary="b", reason="r"),
    ])
    assert ctx.get("holding", (ALICE, 1)) == {"tradable": 85, "listed": 0, "retired": 0}
    assert ctx.get("holding", (BOB, 1)) == {"tradable": 10, "listed": 0, "retired": 5}
    assert ctx.get("holding", (MARKET, 1)) is None  # the marketplace is not an owner
    assert [r[KIND] for r in ctx.rows["ledger_entry"]] == ["mint", "list", "sale", "unlist", "burn"]
    assert ctx.get("listing", (1,))["status"] == "cancelled"
    assert ctx.get("credit_batch", (1,))["total_minted"] == 100 and ctx.get("credit_batch", (1,))["total_retired"] == 5
    assert [r[3] for r in ctx.rows["offchain_payment"]] == ["pi_1"]
    # Alice changed in blocks 2 (mint), 3 (list), 4 (sale: listed), 5 (unlist): one version each.
    assert [b for b, _ in ctx.versions["holding"][(ALICE, 1)]] == [2, 3, 4, 5]


def test_a_plain_transfer_before_a_sale_in_one_tx_stays_a_transfer(ctx):
    """Only movements out of the marketplace wait for the Sold/Cancelled of their tx to name them; a wallet-to-wallet
    transfer earlier in the same transaction (a contract wallet that pays a friend, then buys) is a transfer."""
    apply(ctx, [
        ts(2, "0x02", 0, ZERO, ALICE, 1, 100),
        ts(3, "0x03", 0, ALICE, MARKET, 1, 40),
        ev("Marketplace", "Listed", 3, "0x03", 1, listingId=1, seller=ALICE, batchId=1, amount=40, pricePerUnit=5),
        ts(4, "0x04", 0, ALICE, BOB, 1, 7),
        ts(4, "0x04", 1, MARKET, BOB, 1, 15),
        ev("Marketplace", "Sold", 4, "0x04", 2, listingId=1, buyer=BOB, seller=ALICE, batchId=1, amount=15,
           pricePerUnit=5, paymentRef="pi_1"),
    ])
    assert [r[KIND] for r in ctx.rows["ledger_entry"]] == ["mint", "list", "transfer", "sale"]


def test_several_changes_in_one_block_make_one_version(ctx):
    apply(ctx, [ts(7, "0x07", i, ZERO, ALICE, 3, 1) for i in range(5)])
    assert ctx.versions["holding"][(ALICE, 3)] == [(7, {"tradable": 5, "listed": 0, "retired": 0})]


def test_cache_is_untouched_until_commit(ctx):
    apply(ctx, [ts(1, "0x01", 0, ZERO, ALICE, 1, 9)])
    assert ctx.cache.tables["holding"] == {}
    ctx.commit_to_cache()
    assert ctx.cache.get("holding", (BOB, 1)) is None  # complete cache: a miss means absent
    assert ctx.cache.tables["holding"][(ALICE, 1)]["tradable"] == 9


def test_escrow_lifecycle_and_unknown_order_is_an_error(ctx):
    apply(ctx, [
        ev("Escrow", "OrderCreated", 1, "0x1", 0, orderId=1, buyer=ALICE, seller=BOB, amount=7, metadataHash="0x" + "0" * 64),
        ev("Escrow", "Funded", 2, "0x2", 0, orderId=1, payer=BOB, amount=7, paymentRef="mpesa_1"),
        ev("Escrow", "Shipped", 3, "0x3", 0, orderId=1, trackingHash="0x" + "1" * 64),
        ev("Escrow", "Disputed", 4, "0x4", 0, orderId=1, by=ALICE, reason="late"),
        ev("Escrow", "Resolved", 5, "0x5", 0, orderId=1, refundedBuyer=True),
        ev("Escrow", "Delivered", 6, "0x6", 0, orderId=2),
    ])
    o = ctx.get("escrow_order", (1,))
    assert (o["status"], o["funded_offchain"], o["payment_ref"], o["refunded_buyer"]) == ("resolved", True, "mpesa_1", True)
    assert [r[4] for r in ctx.rows["order_event"]] == ["OrderCreated", "Funded", "Shipped", "Disputed", "Resolved", "Delivered"]
    assert len(ctx.rows["indexing_error"]) == 1 and "unknown order 2" in ctx.rows["indexing_error"][0][-1]


def test_undecodable_log_becomes_an_indexing_error(ctx):
    bad = UndecodableLog("dev", "CarbonCredit", 9, "0xb9", "0xt", 4, "TransferSingle: data too short")
    ctx.error(bad, bad.error)
    assert ctx.rows["indexing_error"] == [["dev", "0xt", 4, 9, "0xb9", "CarbonCredit", "TransferSingle: data too short"]]


def test_duplicate_handler_registration_fails_loudly():
    with pytest.raises(ValueError, match="two handlers"):
        handler("CarbonCredit:Retired")(lambda e, c: None)
    for bad in ("NoColon", "Two:Colons:Here", ":Event", "Contract:"):  # the sync routes by contract, then event
        with pytest.raises(ValueError, match="one colon"):
            handler(bad)


def test_two_errors_at_one_position_make_one_row(ctx):
    # A Substrate event maps onto two neutral events at its position (Issued -> TransferSingle + Minted): when
    # both fail, one indexing_error row holds both messages (the row key is the position), and a rolled-back
    # event takes its message out again.
    minted = ev("CarbonCredit", "Minted", 9, "0xt", 4, to=ALICE, batchId=77, amount=1, verificationHash="0x00")
    ctx.block = 9
    ctx.error(minted, "first")
    ctx.apply_event(H["CarbonCredit:Minted"], minted)  # batch 77 is unknown: a second error at (0xt, 4)
    rows = ctx.rows["indexing_error"]
    assert len(rows) == 1 and rows[0][6] == "first; Minted for unknown batch 77"

    def fails(e, c):
        c.error(e, "third")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        ctx.apply_event(fails, minted)
    assert len(rows) == 1 and rows[0][6] == "first; Minted for unknown batch 77"


def test_a_root_anchored_twice_is_an_error_not_a_second_row(ctx):
    # The EVM contract reverts a repeated root; on Substrate anyone with the anchoring key can remark it twice,
    # and the unique index (chain, root) must never see the second one.
    args = dict(root="0x" + "cd" * 32, leafCount=2, windowStart=1, windowEnd=2, qualityScore=9)
    apply(ctx, [ev("IoTAnchor", "Anchored", 5, "0xa", 0, anchorId=1, **args),
                ev("IoTAnchor", "Anchored", 6, "0xb", 0, anchorId=2, **args)])
    assert len(ctx.rows["iot_anchor"]) == 1
    assert "already anchored" in ctx.rows["indexing_error"][0][6]
