"""Webhook -> checked payment -> intent -> signed tx -> confirmed on anvil, in process (the app via ASGI, the sender
by rounds, PaymentIntents on localstripe, the world indexed by the real indexer)."""

from __future__ import annotations

import pytest

from oracle import outbox
from oracle.testing import count_events, payment_event
from tests.integration.oracle_rig import Rig
from tests.integration.oracle_fixtures import _no_key_in_logs, anyio_backend, localstripe  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.anvil, pytest.mark.anyio]


@pytest.fixture()
def rig(db_url, anvil, localstripe):
    r = Rig(db_url, anvil, stripe=localstripe)
    yield r
    r.close()


async def test_payment_to_chain_exactly_once(rig):
    w = rig.world
    meta = {"listing_id": str(w.listing_id), "buyer": w.w3.eth.accounts[3], "amount": "5"}
    pi_listing, r = await rig.pay(meta)
    assert r.status_code == 200 and r.json()["outcome"] == "accepted", r.text
    pi_order, r = await rig.pay({"order_id": str(w.order_ids[0])})
    assert r.status_code == 200 and r.json()["outcome"] == "accepted", r.text
    for pi, m in ((pi_listing, meta), (pi_order, {"order_id": str(w.order_ids[0])})):  # redeliveries
        r = await rig.post_event(payment_event(pi, m))
        assert r.status_code == 200 and r.json()["duplicate"] is True, r.text
    rig.drain()
    assert rig.status(f"stripe:{pi_listing}") == "confirmed"
    assert rig.status(f"stripe:{pi_order}") == "confirmed"
    sold = count_events(w.w3, w.contract("Marketplace"), "Sold")
    funded = count_events(w.w3, w.contract("Escrow"), "Funded")
    assert [s["paymentRef"] for s in sold] == [pi_listing] and sold[0]["amount"] == 5
    assert [f["paymentRef"] for f in funded] == [pi_order]
    view = await rig.intent(f"stripe:{pi_listing}")
    assert view["status"] == "confirmed" and len(view["attempts"]) == 1 and view["tx_hash"]
    # a second event id for the same PaymentIntent lands on the same intent
    r = await rig.post_event(payment_event(pi_listing, meta, event_id="evt_other"))
    assert r.json()["intent"] == f"stripe:{pi_listing}" and r.json()["status"] == "confirmed"


async def test_precheck_skips_write_chain_already_has(rig):
    """A payment reference the contract already used (e.g. outbox restored from backup) is not sent again."""
    w = rig.world
    mk = w.contract("Marketplace")
    meta = {"listing_id": str(w.listing_id), "buyer": w.admin, "amount": "1"}
    pi = rig.stripe.payment_intent(meta)["id"]
    w.w3.eth.wait_for_transaction_receipt(mk.functions.settleOffchain(w.listing_id, w.admin, 1, pi).transact({"from": w.oracle}))
    r = await rig.post_event(payment_event(pi, meta))
    assert r.status_code == 200
    rig.drain()
    view = await rig.intent(f"stripe:{pi}")
    assert view["status"] == "confirmed" and view["already_on_chain"] and view["attempts"] == []
    assert "paymentRefUsed" in view["error"]
    assert len(count_events(w.w3, mk, "Sold")) == 1
    # Escrow checks the order's status before the reference: the view, not the revert, must say "done". The
    # indexer has seen the order funded by this very reference: that is not a double payment.
    es = w.contract("Escrow")
    meta = {"order_id": str(w.order_ids[0])}
    pi = rig.stripe.payment_intent(meta)["id"]
    w.w3.eth.wait_for_transaction_receipt(es.functions.recordOffchainPayment(w.order_ids[0], pi).transact({"from": w.oracle}))
    rig.index()
    r = await rig.post_event(payment_event(pi, meta))
    assert r.status_code == 200 and r.json()["outcome"] == "accepted", r.text
    rig.drain()
    view = await rig.intent(f"stripe:{pi}")
    assert view["status"] == "confirmed" and view["already_on_chain"]
    assert len(count_events(w.w3, es, "Funded")) == 1


async def test_revert_recorded_with_decoded_error(rig):
    """A write the chain refuses is recorded failed with the decoded custom error (payments for unknown orders never
    get this far: they wait for the indexer, see test_oracle_payments)."""
    rig.queue(outbox.Intent("test:unknown-order", "test", "Escrow", "recordOffchainPayment", ["999", "ref-999"]))
    rig.drain()
    view = await rig.intent("test:unknown-order")
    assert view["status"] == "failed" and view["error"].startswith("UnknownOrder(")


async def _sent_unmined(rig: Rig) -> tuple[str, object]:
    """Automine off (the caller turns it back on), then a payment for an escrow order decided, signed and broadcast:
    (its PaymentIntent id, its flight), the transaction waiting in the node's pool."""
    rig.anvil.rpc("evm_setAutomine", [False])
    pi, r = await rig.pay({"order_id": str(rig.world.order_ids[1])})
    assert r.status_code == 200
    rig.sender.run_once()
    return pi, next(iter(rig.sender.inflight.values()))


async def test_maybe_sent_and_fee_bump_keep_every_hash(db_url, anvil, localstripe):
    """Automine off: the tx sits in the pool; a re-broadcast is 'already imported' (maybe sent); after the bump
    wait a replacement with >=12.5% fees goes out; one of the hashes is mined, the event appears once."""
    rig = Rig(db_url, anvil, stripe=localstripe, fee_bump_after_s=0.3)
    try:
        w = rig.world
        pi, fl = await _sent_unmined(rig)
        fl.rebroadcast_at = 0.0  # force a resend of the same raw tx: the node says "already imported"
        rig.sender.run_once()
        import time

        time.sleep(0.35)
        rig.sender.run_once()  # bump
        assert len(fl.attempts) == 2
        a, b = fl.attempts
        assert b.fees.max_fee >= a.fees.max_fee * 1.125 and b.fees.priority_fee >= a.fees.priority_fee * 1.125
        anvil.rpc("evm_mine", [])
        rig.drain()
        view = await rig.intent(f"stripe:{pi}")
        assert view["status"] == "confirmed" and len(view["attempts"]) == 2
        assert view["tx_hash"] in {x["tx_hash"] for x in view["attempts"]}
        assert len(count_events(w.w3, w.contract("Escrow"), "Funded")) == 1
    finally:
        rig.close()


async def test_a_transaction_the_node_stops_counting_is_repriced_at_once(db_url, anvil, localstripe):
    """The node stops counting our next transaction as pending: dropped from its pool here (anvil also once held one
    as queued, with every later nonce behind it). After stall_bump_after_s, not fee_bump_after_s, a replacement goes
    out; it is mined and the write lands once."""
    import time

    rig = Rig(db_url, anvil, stripe=localstripe, fee_bump_after_s=600.0, stall_bump_after_s=0.3)
    try:
        w = rig.world
        try:
            pi, fl = await _sent_unmined(rig)  # pending in the pool, counted
            first = fl.last.tx_hash
            rig.sender.run_once()
            assert len(fl.attempts) == 1  # counted as pending: nothing to re-price
            anvil.rpc("anvil_dropTransaction", [first])
        finally:
            anvil.rpc("evm_setAutomine", [True])
        deadline = time.monotonic() + 60
        while len(fl.attempts) < 2 and time.monotonic() < deadline:
            rig.sender.run_once()
            time.sleep(0.05)
        assert len(fl.attempts) == 2, "the lost transaction was not re-priced"
        a, b = fl.attempts
        assert b.fees.max_fee >= a.fees.max_fee * 1.125
        rig.drain()
        view = await rig.intent(f"stripe:{pi}")
        assert view["status"] == "confirmed" and view["tx_hash"] == b.tx_hash, view
        assert len(count_events(w.w3, w.contract("Escrow"), "Funded")) == 1
    finally:
        rig.close()


async def test_a_node_that_answers_pending_as_latest_gets_no_stall_repricing(db_url, anvil, localstripe):
    """Some providers answer eth_getTransactionCount(pending) as latest: a transaction waiting for its block then
    looks uncounted. It is not re-priced for that (only after fee_bump_after_s)."""
    import time

    rig = Rig(db_url, anvil, stripe=localstripe, fee_bump_after_s=600.0, stall_bump_after_s=0.1)
    send = rig.sender.writer.rpc._send

    def pending_as_latest(payload):  # the provider's behaviour, as a middleware on the sender's client
        items = payload if isinstance(payload, list) else [payload]
        for it in items:
            if it.get("method") == "eth_getTransactionCount" and it["params"][-1] == "pending":
                it["params"] = [it["params"][0], "latest"]
        return send(payload)

    rig.sender.writer.rpc._send = pending_as_latest
    try:
        try:
            pi, fl = await _sent_unmined(rig)
            deadline = time.monotonic() + 1.5  # fifteen times stall_bump_after_s, waiting for a block
            while time.monotonic() < deadline:
                rig.sender.run_once()
                time.sleep(0.05)
            assert len(fl.attempts) == 1, "re-priced while it only waited for its block"
            anvil.rpc("evm_mine", [])
        finally:
            anvil.rpc("evm_setAutomine", [True])
        rig.drain()
        view = await rig.intent(f"stripe:{pi}")
        assert view["status"] == "confirmed" and len(view["attempts"]) == 1, view
    finally:
        rig.close()


async def test_reorg_rebroadcasts(db_url, anvil, localstripe):
    """Receipt seen, then the block is reorged away before the confirmations: the tx goes out again and lands once."""
    rig = Rig(db_url, anvil, stripe=localstripe, confirmations=3)
    try:
        w = rig.world
        snap = anvil.rpc("evm_snapshot")
        pi, r = await rig.pay({"order_id": str(w.order_ids[2])})
        assert r.status_code == 200 and r.json()["outcome"] == "accepted", r.text
        rig.sender.run_once()
        rig.sender.run_once()  # receipt learnt (1 confirmation < 3)
        fl = next(iter(rig.sender.inflight.values()))
        assert fl.receipt is not None
        anvil.rpc("evm_revert", [snap])  # drops the block and its tx
        anvil.rpc("anvil_mine", ["0x3"])  # a longer branch without our tx
        for _ in range(50):
            rig.sender.run_once()
            anvil.rpc("anvil_mine", ["0x1"])
            if rig.status(f"stripe:{pi}") == "confirmed":
                break
        assert rig.status(f"stripe:{pi}") == "confirmed"
        assert [f["paymentRef"] for f in count_events(w.w3, w.contract("Escrow"), "Funded")] == [pi]
    finally:
        rig.close()


async def test_mined_revert_recorded_with_decoded_error(rig):
    """The chain is the last layer: two writes for one escrow order (payments never get there: the second is flagged
    double_paid, see test_oracle_payments) pass the pre-check together; the chain takes the first and reverts the
    second, which is recorded as failed with the decoded custom error, never retried."""
    w = rig.world
    for ref in ("ref_twice_a", "ref_twice_b"):
        rig.queue(outbox.Intent(f"test:{ref}", "test", "Escrow", "recordOffchainPayment", [str(w.order_ids[0]), ref]))
    rig.drain()
    a, b = await rig.intent("test:ref_twice_a"), await rig.intent("test:ref_twice_b")
    assert a["status"] == "confirmed" and b["status"] == "failed"
    assert b["error"].startswith("InvalidStatus(") and len(b["attempts"]) == 1 and b["block_number"]
    assert [f["paymentRef"] for f in count_events(w.w3, w.contract("Escrow"), "Funded")] == ["ref_twice_a"]


async def test_one_nonce_owner_and_fencing(rig):
    """A second sender cannot take the key while the first holds it; once the first's session dies the second
    takes over with a higher epoch, and the first can no longer persist a nonce."""
    import threading

    from oracle.lease import LeaseLost
    from oracle.sender import Sender

    w = rig.world
    rig.sender.run_once()
    assert rig.sender.lease.held
    other = Sender(rig.url, rig.pool, rig.writer, rig.settings, "other-owner", threading.Event())
    assert other.run_once() is False and not other.lease.held
    old_epoch = rig.sender.lease.epoch
    rig.sender.lease.conn.close()  # the owner's session dies (as on SIGKILL); its in-memory state says "held"
    rig.sender.lease.conn = rig.sender.lease.conn  # still believes it holds the lease
    other.run_once()
    assert other.lease.held and other.lease.epoch == old_epoch + 1
    pi, r = await rig.pay({"order_id": str(w.order_ids[1])})
    assert r.status_code == 200
    with pytest.raises(LeaseLost):
        rig.sender._fill()  # the stale owner is fenced out before it can use a nonce
    for _ in range(50):
        other.run_once()
        if rig.status(f"stripe:{pi}") == "confirmed":
            break
    assert rig.status(f"stripe:{pi}") == "confirmed"
    other.lease.release()


async def test_a_write_the_duplicate_guard_reverts_at_mining_is_done_not_failed(rig):
    """The pre-check passed, then the same payment reference was written first (another attempt of this intent
    that we lost track of, a requeue after its nonce was taken): the chain reverts ours with PaymentRefUsed. That
    write is on chain once: the intent is confirmed (already on chain), and no refund is asked for the payment."""
    w = rig.world
    mk = w.contract("Marketplace")
    other = w.w3.eth.accounts[6]
    role = mk.functions.ORACLE_ROLE().call()
    w.w3.eth.wait_for_transaction_receipt(mk.functions.grantRole(role, other).transact({"from": w.admin}))
    meta = {"listing_id": str(w.listing_id), "buyer": w.w3.eth.accounts[3], "amount": "2"}
    rig.anvil.rpc("evm_setAutomine", [False])
    try:
        pi, r = await rig.pay(meta)
        assert r.status_code == 200 and r.json()["outcome"] == "accepted", r.text
        rig.sender.run_once()  # pre-checked (reference unused), signed and sent: waiting in the pool
        assert rig.status(f"stripe:{pi}") in ("signed", "sent")
        tip = 50 * 10**9  # the same reference, paying far more priority: ordered before ours in the next block
        mk.functions.settleOffchain(w.listing_id, w.w3.eth.accounts[3], 2, pi).transact(
            {"from": other, "maxPriorityFeePerGas": tip, "maxFeePerGas": 4 * tip})
        rig.anvil.rpc("evm_mine", [])
    finally:
        rig.anvil.rpc("evm_setAutomine", [True])
    rig.drain()
    view = await rig.intent(f"stripe:{pi}")
    assert view["status"] == "confirmed" and view["already_on_chain"], view
    assert view["error"].startswith("PaymentRefUsed(") and view["block_number"]
    receipt = w.w3.eth.get_transaction_receipt(view["tx_hash"])
    assert receipt["status"] == 0  # our transaction did revert: the chain's one write is the other one
    assert [s["paymentRef"] for s in count_events(w.w3, mk, "Sold")] == [pi]
    with __import__("psycopg").connect(rig.url) as c:
        assert c.execute("SELECT status FROM oracle_payment WHERE payment_id = %s", (pi,)).fetchone()[0] == "accepted"
