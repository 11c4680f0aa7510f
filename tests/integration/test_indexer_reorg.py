"""Reorgs on anvil (evm_snapshot/evm_revert, anvil_rollback, anvil_reorg): at the head, during backfill, while
stopped, removing a retire, reordering transfers, and one deeper than finality. After each, the database equals
a fresh index of the canonical chain (history included), and the current state equals the chain's views."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from web3 import Web3

from indexer.runner import EXIT_REORG_TOO_DEEP, Indexer, run_once
from tests.integration.scenario import (deploy, dump, ground_truth, index_env, indexed_state, run_scenario, settings_for,
                                        wait_mined)

pytestmark = pytest.mark.anvil


class Running:
    """An in-process indexer on a thread, like the daemon."""

    def __init__(self, settings, db_url):
        self.idx = Indexer(settings, db_url=db_url)
        self.code = None
        self.thread = threading.Thread(target=lambda: setattr(self, "code", self.idx.run()), daemon=True)
        self.thread.start()

    def wait_synced(self, w3, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            head = w3.eth.get_block("latest")
            s = self.idx.syncs[0]
            if s.cursor == (head.number, head.hash.to_0x_hex()):
                return
            assert self.thread.is_alive(), f"indexer exited with {self.code}"
            time.sleep(0.05)
        raise AssertionError("indexer did not reach the head")

    def stop(self):
        self.idx.stop.set()
        self.thread.join(10)
        return self.code


def _check(w3, dep, db_url, pg_factory, url):
    assert indexed_state(db_url, "dev") == ground_truth(w3, dep)
    ref = pg_factory.fresh()
    try:
        assert run_once(settings_for(url, dep, ref, finality_depth=32), db_url=ref) == 0
        assert dump(db_url) == dump(ref)
    finally:
        pg_factory.drop(ref)


@pytest.fixture()
def chain(anvil):
    w3 = Web3(Web3.HTTPProvider(anvil.url))
    dep = deploy(w3)
    run_scenario(w3, dep, actions=40, seed=1)
    return w3, dep


def test_reorgs_at_head_depths_1_to_20(anvil, chain, db_url, pg_factory):
    w3, dep = chain
    run = Running(settings_for(anvil.url, dep, db_url, finality_depth=32), db_url)
    try:
        run.wait_synced(w3)
        for n, depth in enumerate([1, 2, 3, 5, 8, 13, 20]):
            snap, base = anvil.rpc("evm_snapshot"), w3.eth.block_number
            run_scenario(w3, dep, actions=depth, seed=1000 + depth)
            if w3.eth.block_number - base < depth:  # reverted actions mine nothing: make the depth exact
                anvil.rpc("anvil_mine", [hex(depth - (w3.eth.block_number - base))])
            run.wait_synced(w3)
            anvil.rpc("evm_revert", [snap])
            run_scenario(w3, dep, actions=depth, seed=2000 + depth)
            anvil.rpc("anvil_mine", [hex(max(1, base + depth + 1 - w3.eth.block_number))])  # a longer branch
            run.wait_synced(w3)
            assert run.idx.syncs[0].stats.reorgs == n + 1
        assert run.stop() == 0
    finally:
        run.idx.stop.set()
    _check(w3, dep, db_url, pg_factory, anvil.url)


def test_anvil_reorg_and_rollback_while_following(anvil, chain, db_url, pg_factory):
    w3, dep = chain
    run = Running(settings_for(anvil.url, dep, db_url, finality_depth=32), db_url)
    try:
        run.wait_synced(w3)
        anvil.rpc("anvil_reorg", [4, []])  # same height, new hashes, the last 4 blocks' txs dropped
        run.wait_synced(w3)
        anvil.rpc("anvil_rollback", [6])  # shorter chain: head below our cursor with a different hash
        anvil.rpc("anvil_mine", [hex(1)])
        run.wait_synced(w3)
        run_scenario(w3, dep, actions=10, seed=77)
        run.wait_synced(w3)
        assert run.idx.syncs[0].stats.reorgs >= 2
    finally:
        run.stop()
    _check(w3, dep, db_url, pg_factory, anvil.url)


def test_reorg_removes_a_retire_and_reorders_transfers_while_stopped(anvil, chain, db_url, pg_factory):
    """With a tiny state cache, so undo + lazy reads from Postgres are exercised too."""
    w3, dep = chain
    settings = settings_for(anvil.url, dep, db_url, finality_depth=32)
    cc = dep.contract(w3, "CarbonCredit")
    a, b, c = w3.eth.accounts[7:10]
    admin = w3.eth.accounts[0]
    cc.functions.createBatch("P", 2024, "M", "R", "S", b"\x01" * 32).transact({"from": admin})
    batch = cc.functions.batchCount().call()
    cc.functions.mint(a, batch, 100, b"\x02" * 32).transact({"from": admin})
    assert run_once(settings, db_url=db_url, cache_limit=4) == 0
    snap = anvil.rpc("evm_snapshot")
    cc.functions.safeTransferFrom(a, b, batch, 10, b"").transact({"from": a})
    cc.functions.safeTransferFrom(a, c, batch, 20, b"").transact({"from": a})
    cc.functions.retire(batch, 30, "someone", "offset").transact({"from": a})
    assert run_once(settings, db_url=db_url, cache_limit=4) == 0
    assert any(r[1] == a.lower() for r in indexed_state(db_url, "dev").retirements)
    # While the indexer is stopped: the retire vanishes and the two transfers swap order.
    anvil.rpc("evm_revert", [snap])
    cc.functions.safeTransferFrom(a, c, batch, 20, b"").transact({"from": a})
    cc.functions.safeTransferFrom(a, b, batch, 10, b"").transact({"from": a})
    anvil.rpc("anvil_mine", [hex(2)])
    assert run_once(settings, db_url=db_url, cache_limit=4) == 0
    got = indexed_state(db_url, "dev")
    assert not any(r[1] == a.lower() for r in got.retirements)
    assert got.holdings[(a.lower(), batch)] == (70, 0, 0)
    _check(w3, dep, db_url, pg_factory, anvil.url)


def test_reorg_during_backfill(anvil, chain, db_url, pg_factory):
    w3, dep = chain
    anvil.mine(1500)
    run_scenario(w3, dep, actions=10, seed=9)
    snap = anvil.rpc("evm_snapshot")
    run_scenario(w3, dep, actions=5, seed=10)
    run = Running(settings_for(anvil.url, dep, db_url, finality_depth=32, max_block_range=5), db_url)
    try:
        while run.idx.syncs[0].stats.block < 100:
            time.sleep(0.01)
        assert run.idx.syncs[0].stats.mode == "backfill"
        anvil.rpc("evm_revert", [snap])  # replaces the 5 newest blocks while the indexer is far below them
        run_scenario(w3, dep, actions=8, seed=11)
        run.wait_synced(w3)
    finally:
        run.stop()
    _check(w3, dep, db_url, pg_factory, anvil.url)


def test_reorg_deeper_than_finality_halts_untouched(anvil, chain, db_url):
    w3, dep = chain
    settings = settings_for(anvil.url, dep, db_url, finality_depth=3)
    snap = anvil.rpc("evm_snapshot")
    run_scenario(w3, dep, actions=12, seed=21)
    assert run_once(settings, db_url=db_url) == 0
    before = dump(db_url)
    anvil.rpc("evm_revert", [snap])
    run_scenario(w3, dep, actions=14, seed=22)
    assert run_once(settings, db_url=db_url) == EXIT_REORG_TOO_DEEP
    assert dump(db_url) == before
    # The daemon says so too: a distinct exit code and one clear critical log line.
    proc = subprocess.run([sys.executable, "-m", "carbonledger.cli", "index", "--no-progress", "--port", "-1"],
                          env=index_env(settings), capture_output=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == EXIT_REORG_TOO_DEEP == 3
    lines = [json.loads(x) for x in proc.stderr.decode().splitlines() if x.startswith("{")]
    assert any(x["level"] == "critical" and x.get("alert") == "reorg_too_deep" for x in lines), proc.stderr[-2000:]
    assert dump(db_url) == before


# --------------------------------------------------------------------------- continuity on every cursor advance


def _listing_block(w3, dep):
    """A block holding a fresh listing (seller lists 40 of 100 minted credits); returns the seller and batch."""
    cc, mk = dep.contract(w3, "CarbonCredit"), dep.contract(w3, "Marketplace")
    admin, seller = w3.eth.accounts[0], w3.eth.accounts[8]
    cc.functions.createBatch("P-REORG", 2024, "M", "R", "S-REORG", b"\x05" * 32).transact({"from": admin})
    batch = cc.functions.batchCount().call()
    cc.functions.mint(seller, batch, 100, b"\x06" * 32).transact({"from": admin})
    cc.functions.setApprovalForAll(mk.address, True).transact({"from": seller})
    mk.functions.list(batch, 40, 10**12).transact({"from": seller})  # the head block now holds only the listing
    wait_mined(w3)
    return seller, batch


def _replace_head_with_anchor(anvil, w3, dep):
    """anvil_reorg depth 1: the listing's block is replaced by one holding an IoT anchor."""
    wait_mined(w3)
    tx = dep.contract(w3, "IoTAnchor").functions.anchor(b"\x07" * 32, 3, 1, 2, 90).build_transaction(
        {"from": w3.eth.accounts[0], "gas": 300_000})
    anvil.rpc("anvil_reorg", [1, [[{k: hex(v) if isinstance(v, int) else v for k, v in tx.items()
                                    if k in ("from", "to", "data", "gas")}, 0]]])


def _spawn_index(settings) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "carbonledger.cli", "index", "--no-progress", "--port", "-1"],
                            cwd=Path(__file__).resolve().parents[2], env=index_env(settings),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _cursor_of(db_url):
    return dump(db_url)["cursor"]


def _stopped_stderr(proc) -> str:
    """The end of a spawned indexer's stderr, for a failure message: stopped first, since reading a live process's
    pipe to its end would wait for as long as it runs (a missed deadline then hung the test instead of failing it)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    return proc.stderr.read().decode()[-2000:]


@pytest.mark.parametrize("how", ["restart", "sigkill", "sigstop"])
def test_reorg_under_the_cursor_is_undone_when_finality_passed_it(how, anvil, chain, db_url, pg_factory):
    """The independent check's reproduction: a block under the cursor is replaced while the indexer is down (or
    paused), then the chain grows past finality, so the indexer resumes by backfill: continuity must still be proven
    against the block under the cursor, and the orphaned listing undone."""
    import signal

    w3, dep = chain
    settings = settings_for(anvil.url, dep, db_url, finality_depth=5)
    seller, batch = _listing_block(w3, dep)
    head = w3.eth.get_block("latest")
    proc = None
    if how == "restart":
        assert run_once(settings, db_url=db_url) == 0
    else:
        proc = _spawn_index(settings)
        deadline = time.monotonic() + 120
        while _cursor_of(db_url) != [("dev", head.number, head.hash.to_0x_hex())]:
            assert proc.poll() is None and time.monotonic() < deadline, _stopped_stderr(proc)
            time.sleep(0.05)
        if how == "sigkill":
            proc.kill()
            proc.wait()
        else:
            proc.send_signal(signal.SIGSTOP)
    assert indexed_state(db_url, "dev").holdings[(seller.lower(), batch)] == (60, 40, 0)
    try:
        _replace_head_with_anchor(anvil, w3, dep)
        anvil.rpc("anvil_mine", [hex(70)])  # the finalized block (head - 5) passes the cursor
        if how == "sigstop":
            proc.send_signal(signal.SIGCONT)
            tip = w3.eth.get_block("latest")
            deadline = time.monotonic() + 120
            while _cursor_of(db_url) != [("dev", tip.number, tip.hash.to_0x_hex())]:
                assert proc.poll() is None and time.monotonic() < deadline, _stopped_stderr(proc)
                time.sleep(0.05)
        else:
            assert run_once(settings, db_url=db_url) == 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(30)
    got = indexed_state(db_url, "dev")
    assert got.holdings[(seller.lower(), batch)] == (100, 0, 0)
    assert any(a[1] == "0x" + "07" * 32 for a in got.anchors)
    _check(w3, dep, db_url, pg_factory, anvil.url)


def test_shortened_chain_is_unwound_after_the_grace(anvil, chain, db_url, pg_factory):
    """anvil_rollback 2 and no new block: the node has no block at heights we hold. A lagging node looks the same
    for a moment, so the indexer waits `shrink_grace_s` with the node's head unchanged, then unwinds to it."""
    w3, dep = chain
    run = Running(settings_for(anvil.url, dep, db_url, finality_depth=32, shrink_grace_s=1.0), db_url)
    try:
        run.wait_synced(w3)
        seller, batch = _listing_block(w3, dep)
        run.wait_synced(w3)
        assert indexed_state(db_url, "dev").holdings[(seller.lower(), batch)] == (60, 40, 0)
        wait_mined(w3)
        anvil.rpc("anvil_rollback", [2])  # drops the listing and the approval; nothing replaces them
        run.wait_synced(w3, timeout=120)
        assert run.idx.syncs[0].stats.reorgs == 1
        assert indexed_state(db_url, "dev").holdings[(seller.lower(), batch)] == (100, 0, 0)
        run_scenario(w3, dep, actions=5, seed=78)  # and it follows the chain on from there
        run.wait_synced(w3)
    finally:
        run.stop()
    _check(w3, dep, db_url, pg_factory, anvil.url)
