"""With `ws_url` set, a new block is indexed at once (newHeads), not at the next poll."""

from __future__ import annotations

import time

import pytest
from web3 import Web3

from tests.integration.scenario import deploy, indexed_state, run_scenario, settings_for
from tests.integration.test_indexer_reorg import Running

pytestmark = pytest.mark.anvil


def test_new_heads_wake_the_indexer(anvil, db_url):
    w3 = Web3(Web3.HTTPProvider(anvil.url))
    dep = deploy(w3)
    run_scenario(w3, dep, actions=10, seed=41)
    settings = settings_for(anvil.url, dep, db_url, poll_interval_s=30.0, finality_depth=2,
                            ws_url=anvil.url.replace("http://", "ws://"))
    run = Running(settings, db_url)
    try:
        run.wait_synced(w3, timeout=30)
        time.sleep(0.5)
        for _ in range(3):
            before = len(indexed_state(db_url, "dev").ledger)
            t0 = time.monotonic()
            cc = dep.contract(w3, "CarbonCredit")
            tx = cc.functions.mint(w3.eth.accounts[1], 1, 5, Web3.keccak(text=str(t0))).transact({"from": w3.eth.accounts[0]})
            # anvil's automine can answer the send before the block exists; wait_synced compares with the head it sees,
            # so wait for the block first (a CI run once read the old head here and found the indexer "synced")
            w3.eth.wait_for_transaction_receipt(tx, timeout=5)
            run.wait_synced(w3, timeout=5)  # a 30 s poll could never make this
            assert time.monotonic() - t0 < 3
            assert len(indexed_state(db_url, "dev").ledger) == before + 1
        assert run.idx.watchers[0].heads >= 3
    finally:
        assert run.stop() == 0


def test_an_indexer_run_that_ends_takes_its_head_watcher_with_it(anvil, db_url):
    """run_once (or any run ended by its `until`) leaves no head-watcher thread behind logging into the void."""
    import threading

    from indexer.runner import Indexer

    w3 = Web3(Web3.HTTPProvider(anvil.url))
    dep = deploy(w3)
    settings = settings_for(anvil.url, dep, db_url, finality_depth=0, ws_url=anvil.url.replace("http://", "ws://"))
    idx = Indexer(settings, db_url=db_url)
    assert idx.run(until=lambda i: all(s.stats.leader and s.caught_up() for s in i.syncs)) == 0
    assert not idx.stop.is_set()  # ended by `until`, not by a stop
    assert not [t for t in threading.enumerate() if t.name.startswith("heads-")]
