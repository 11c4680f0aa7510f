"""SubstrateWriter on the real runtime: signed mortal extrinsics with the sender's nonce, inclusion and finality,
ExtrinsicFailed decoded, an expired era resolved as never included, and an oracle-style anchor the indexer reads."""

from __future__ import annotations

import pytest

from chains.base import TxRequest, TxState
from chains.rpc import RpcError
from indexer.runner import run_once
from tests.integration.substrate_world import World
from tests.integration.test_substrate_indexer import substrate_settings

pytestmark = [pytest.mark.chopsticks, pytest.mark.slow]


def settled(writer, tx: str, timeout_s: float = 120.0):
    """Its status once it is no longer pending (Instant mode builds the block just after the submit answers)."""
    import time

    deadline = time.monotonic() + timeout_s
    while (st := writer.status(tx)).state is TxState.PENDING and time.monotonic() < deadline:
        time.sleep(0.2)
    return st


def test_writer_lifecycle_on_chopsticks(chopsticks, db_url):
    from chains.substrate.writer import SubstrateWriter

    chop = chopsticks(mode="Instant")
    world = World(chop.ws_url)
    world.fund(chop)
    w = SubstrateWriter("ah", chop.ws_url, world.keys["Alice"])
    assert w.address() == world.pk("Alice")
    nonce = w.next_nonce()
    create = TxRequest("ah", "Assets", "create", ({"id": 77, "admin": w.address(), "min_balance": 1},))
    assert w.precheck(create) is None
    fee = w.fee_estimate(create)
    assert 0 < fee < 10**12  # a fraction of one ROC
    tx, raw = w.sign(create, nonce)
    assert w.broadcast(raw) == tx  # Instant mode: included at once
    st = settled(w, tx)
    assert (st.state, st.tx_hash, st.confirmations >= 1) == (TxState.MINED, tx, True)
    with pytest.raises(RpcError):  # the same bytes again: its nonce is used (the caller asks status(): mined)
        w.broadcast(raw)
    assert settled(w, tx).state is TxState.MINED

    again = w.sign(create, w.next_nonce())  # asset 77 exists: the extrinsic is included and fails
    assert w.precheck(create) is not None
    w.broadcast(again[1])
    failed = settled(w, again[0])
    assert failed.state is TxState.REVERTED and "InUse" in failed.error

    root = "0x" + "5a" * 32
    anchor = TxRequest("ah", "IoTAnchor", "anchor", (root, 12, 1_700_000_000, 1_700_000_600, 88), idempotency_key="iot:1")
    tx, raw = w.sign(anchor, w.next_nonce())
    w.broadcast(raw)
    assert settled(w, tx).state is TxState.MINED
    assert run_once(substrate_settings(chop.url, db_url, world.pk("Alice")), db_url=db_url, timeout_s=300) == 0
    import psycopg

    from store.engine import libpq_url

    with psycopg.connect(libpq_url(db_url)) as conn:
        assert conn.execute("SELECT root, leaf_count, quality_score, tx_hash FROM iot_anchor").fetchall() == \
            [(root, 12, 88, tx)]

    short = SubstrateWriter("ah", chop.ws_url, world.keys["Alice"], era_period=4)
    gap = short.sign(anchor, short.next_nonce() + 3)  # a nonce gap: it waits in the pool and its era runs out
    short.broadcast(gap[1])
    assert short.status(gap[0]).state is TxState.PENDING
    chop.new_block(6)
    assert short.status(gap[0]).state is TxState.UNKNOWN  # can never be included: safe to sign again
    fresh = SubstrateWriter("ah", chop.ws_url, world.keys["Alice"], era_period=4)  # a restarted process
    assert fresh.status(gap[0]).state is TxState.PENDING  # without its birth nothing proves it dead
    fresh.remember(gap[0], short._births[gap[0]])
    assert fresh.status(gap[0]).state is TxState.UNKNOWN
    world.close()
