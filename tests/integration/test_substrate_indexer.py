"""The Substrate family on a real Asset Hub runtime (chopsticks): a random credit-ledger scenario indexed and
compared with a ground truth recomputed from the raw System.Events; bad input recorded, never a crash; SIGKILL
mid-way equal to an uninterrupted run; a best-head reorg (dev_setHead) undone."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import psycopg
import pytest

from chains.substrate.runtime import EVENTS_KEY, storage_key
from indexer.runner import Indexer, run_once
from store.engine import libpq_url
from tests import seeds
from tests.integration.scenario import dump, index_env
from tests.integration.substrate_world import MAPPED, World, ground_truth, indexed, run_scenario

pytestmark = [pytest.mark.chopsticks, pytest.mark.slow]
ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def substrate_settings(url: str, db_url: str, alice: str, chain: str = "ah", **kw: Any) -> Any:
    from core.config import Settings

    assets = {a: {"project_id": p, "vintage": v, "methodology": "VM0038", "registry": "Verra"}
              for a, (p, v) in MAPPED.items()}
    return Settings(database={"url": db_url}, chains={chain: {
        "family": "substrate", "rpc_url": url, "ss58_format": 2, "assets": assets, "anchor_senders": [alice],
        "poll_interval_s": 0.05, "request_timeout_s": 30.0, **kw}})


def _errors(db_url: str) -> list[tuple]:
    with psycopg.connect(libpq_url(db_url)) as conn:
        return conn.execute("SELECT block_number, log_index, contract, message FROM indexing_error "
                            "ORDER BY block_number, log_index").fetchall()


@pytest.fixture()
def ledger(chopsticks):
    """A chain holding the scenario, with one block whose System.Events were corrupted after it was built."""
    chop = chopsticks(mode="Manual")
    world = World(chop.ws_url)
    world.fund(chop)
    # Half way, the runtime reports a new spec version (System.LastRuntimeUpgrade, as after an upgrade): the
    # reader must fetch that version's metadata at the first block it ran and decode each side with its own.
    upgrade = storage_key("System", "LastRuntimeUpgrade")
    run_scenario(world, chop, rounds=6, seed=7, after_round=lambda r: r == 2 and chop.rpc(
        "dev_setStorage", [[[upgrade, "0x150e2473746174656d696e65"]]]))  # spec 901, "statemine"
    bad = chop.new_block()  # an empty block ...
    chop.rpc("dev_setStorage", [[[EVENTS_KEY, "0x04ff00ff"]]])  # ... whose events no runtime can decode
    chop.new_block()
    yield chop, world, bad
    world.close()


def test_scenario_matches_ground_truth_and_bad_input_is_recorded(ledger, db_url):
    chop, world, bad = ledger
    head = chop.head_number()
    settings = substrate_settings(chop.url, db_url, world.pk("Alice"))
    idx = Indexer(settings, db_url=db_url)
    assert idx.run(until=lambda i: all(s.stats.leader and s.caught_up() for s in i.syncs)) == 0
    assert sorted(idx.syncs[0].reader.runtimes._by_version) == [900, 901]
    truth = ground_truth(world, head, anchor_sender=world.pk("Alice"), skip=frozenset({bad}))
    got = indexed(db_url, "ah")
    assert got.blocks == head
    assert truth.retirements and truth.anchors and len(truth.holdings) >= 4  # the scenario did something
    assert got.holdings == truth.holdings
    assert got.retirements == truth.retirements
    assert got.anchors == truth.anchors
    assert got.minted == truth.minted
    errors = _errors(db_url)
    messages = " | ".join(m for *_, m in errors)
    assert any(b == bad and i == -1 and "System.Events do not decode" in m for b, i, _, m in errors), errors
    assert "malformed carbonledger record: anchor" in messages  # Alice's record with a bad root
    assert "asset 1003 is not a credit batch" in messages  # a retirement of an asset that is no credit batch
    assert len(errors) == 3, errors  # and nothing else: others' remarks and unmapped assets are not errors
    _same_answers_from_the_api(db_url, world, truth)


def _same_answers_from_the_api(db_url: str, world: World, truth: Any) -> None:
    """The GraphQL API answers for Substrate accounts (given as SS58) from the same tables as for EVM ones."""
    from gqlapi.testing import ApiClient

    api = ApiClient(db_url, max_page_size=1000)
    try:
        for name in ("Bob", "Charlie", "Dave"):
            d = api.q('query($o: String!) { portfolio(owner: $o, chain: "ah") { holdings { batchId tradable retired '
                      'batch { projectId vintage } } certificates { beneficiary reason amount } } }',
                      {"o": world.keys[name].ss58_address})["portfolio"]
            key = world.pk(name)
            want = {b: v for (o, b), v in truth.holdings.items() if o == key}
            assert {int(h["batchId"]): (int(h["tradable"]), int(h["retired"])) for h in d["holdings"]} == want
            assert all(h["batch"]["projectId"] == MAPPED[int(h["batchId"])][0] for h in d["holdings"])
            assert sorted((c["beneficiary"], c["reason"], int(c["amount"])) for c in d["certificates"]) == \
                sorted((ben, rea, a) for o, _, a, ben, rea in truth.retirements if o == key)
        # Provenance carries block, extrinsic and event index: the extrinsic at (block, txIndex) is the one hashed.
        certs = api.q('{ certificates(first: 20, where: {chain: "ah"}) { nodes { txHash blockNumber txIndex logIndex } } }')
        from hashlib import blake2b

        for c in certs["certificates"]["nodes"]:
            block = world.si.get_block(block_number=c["blockNumber"])
            raw = block["extrinsics"][c["txIndex"]].data.data
            assert "0x" + blake2b(bytes(raw), digest_size=32).hexdigest() == c["txHash"], c
    finally:
        api.close()


def _cursor(db_url: str) -> int:
    with psycopg.connect(libpq_url(db_url)) as conn:
        row = conn.execute("SELECT block_number FROM indexer_cursor").fetchone()
    return row[0] if row else -1


def test_sigkill_mid_way_equals_an_uninterrupted_run(ledger, db_url, pg_factory):
    chop, world, _ = ledger
    reference = pg_factory.fresh()
    try:
        assert run_once(substrate_settings(chop.url, reference, world.pk("Alice")), db_url=reference) == 0
        want = dump(reference)
    finally:
        pg_factory.drop(reference)
    # Head following with nothing final: one commit per block, so the kills land between many commits.
    settings = substrate_settings(chop.url, db_url, world.pk("Alice"), follow="best", use_finalized_tag=False,
                                  finality_depth=1000)
    rng = seeds.rng(5)
    head, kills, mid_way = chop.head_number(), 0, 0
    while _cursor(db_url) < head and kills < 12:
        before = _cursor(db_url)
        proc = subprocess.Popen([sys.executable, "-m", "carbonledger.cli", "index", "--no-progress", "--port", "-1"],
                                cwd=ROOT, env=index_env(settings), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while _cursor(db_url) == before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # wait until it is working (start-up decodes the metadata: seconds on a busy box)
        time.sleep(rng.uniform(0.0, 0.05))
        proc.kill()
        proc.wait()
        kills += 1
        mid_way += _cursor(db_url) < head
    assert mid_way >= 1  # at least one kill landed while blocks were left to index
    final = subprocess.Popen([sys.executable, "-m", "carbonledger.cli", "index", "--no-progress", "--port", "-1",
                              "--once"], cwd=ROOT, env=index_env(settings), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    assert final.wait(300) == 0, final.stderr.read().decode()[-2000:]
    assert dump(db_url) == want


def test_best_head_reorg_is_undone(chopsticks, db_url):
    chop = chopsticks(mode="Manual")
    world = World(chop.ws_url)
    world.fund(chop)
    run_scenario(world, chop, rounds=2, seed=11)
    # Best-head following on a node whose blocks are not final yet (chopsticks finalizes at once: depth instead).
    settings = substrate_settings(chop.url, db_url, world.pk("Alice"), follow="best", use_finalized_tag=False,
                                  finality_depth=50)

    def index() -> Any:
        idx = Indexer(settings, db_url=db_url)
        idx.run(until=lambda i: all(s.stats.leader and s.caught_up() for s in i.syncs))
        return idx.syncs[0].stats

    asset = next(iter(MAPPED))
    world.submit("Charlie", world.call("Assets", "transfer", id=asset, target=world.pk("Dave"), amount=7))
    orphan = chop.new_block()
    orphan_hash = chop.rpc("chain_getBlockHash", [orphan])
    assert index().reorgs == 0
    with psycopg.connect(libpq_url(db_url)) as conn:
        assert conn.execute("SELECT count(*) FROM ledger_entry WHERE block_number = %s AND amount = 7",
                            (orphan,)).fetchone()[0] == 1
    chop.set_head(orphan - 1)  # block `orphan` is abandoned: a different one takes its height
    world.nonces["Charlie"] -= 1
    world.submit("Charlie", world.call("Assets", "transfer", id=asset, target=world.pk("Bob"), amount=11))
    assert chop.new_block() == orphan
    assert chop.rpc("chain_getBlockHash", [orphan]) != orphan_hash
    stats = index()
    assert stats.reorgs == 1
    truth = ground_truth(world, orphan, anchor_sender=world.pk("Alice"))
    got = indexed(db_url, "ah")
    assert (got.holdings, got.retirements, got.anchors, got.blocks) == \
        (truth.holdings, truth.retirements, truth.anchors, orphan)
    with psycopg.connect(libpq_url(db_url)) as conn:
        amounts = conn.execute("SELECT amount, block_hash FROM ledger_entry WHERE block_number = %s",
                               (orphan,)).fetchall()
    assert [(int(a), h) for a, h in amounts] == [(11, chop.rpc("chain_getBlockHash", [orphan]))]
    world.close()


def test_pushed_finalized_heads_wake_the_indexer(chopsticks, db_url):
    import threading

    chop = chopsticks(mode="Manual")
    world = World(chop.ws_url)
    world.fund(chop)
    run_scenario(world, chop, rounds=0, seed=3)
    settings = substrate_settings(chop.url, db_url, world.pk("Alice"), poll_interval_s=30.0, ws_url=chop.ws_url)
    idx = Indexer(settings, db_url=db_url)
    code: list[int] = []
    thread = threading.Thread(target=lambda: code.append(idx.run()), daemon=True)
    thread.start()

    def synced(timeout_s: float) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if idx.syncs[0].cursor[0] == chop.head_number():
                return time.monotonic() - t0
            assert thread.is_alive(), code
            time.sleep(0.05)
        raise AssertionError("the indexer did not reach the head")

    try:
        synced(120)
        for k in range(2):
            world.submit("Bob", world.call("Assets", "transfer", id=1001, target=world.pk("Dave"), amount=1 + k))
            chop.new_block()
            assert synced(20) < 20  # a 30 s poll could not make it: chain_subscribeFinalizedHeads woke it
        assert idx.watchers[0].heads >= 2
    finally:
        idx.stop.set()
        thread.join(30)
        world.close()
    assert code == [0]


def test_ink_contracts_on_a_runtime_without_the_contracts_pallet_are_refused_at_start(chopsticks, db_url, monkeypatch):
    """The reader and the oracle read the runtime's metadata before following or writing to ink! contracts: Asset
    Hub has no contracts pallet, so a config naming one is a start-up error naming the key, not a chain followed for
    events that cannot come or payments accepted that can never be written."""
    from chains.substrate.reader import SubstrateReader
    from core.config import ConfigError
    from oracle.runtime import _substrate_writer

    chop = chopsticks()
    meta = str(ROOT / "contracts" / "substrate" / "escrow.json")
    s = substrate_settings(chop.url, db_url, "0x" + "01" * 32,
                           ink_contracts={"0x" + "e5" * 32: {"role": "Escrow", "metadata": meta}})
    with pytest.raises(ConfigError, match=r"chains\.ah\.ink_contracts: the node's runtime has no contracts pallet"):
        SubstrateReader.open("ah", s.chains["ah"])
    opened = SubstrateReader.open("ah", substrate_settings(chop.url, db_url, "0x" + "01" * 32).chains["ah"])
    assert opened.reader.best_runtime().has_event("Assets", "Transferred")
    monkeypatch.setenv("CARBONLEDGER_SIGNER_KEY", "0x" + "5e" * 32)
    with_escrow = substrate_settings(chop.url, db_url, "0x" + "01" * 32, ws_url=chop.ws_url,
                                     ink_contracts={"0x" + "e5" * 32: {"role": "Escrow", "metadata": meta}})
    with pytest.raises(ConfigError, match=r"chains\.ah\.ink_contracts: the node's runtime has no contracts pallet "
                                          r"\(Contracts\.call\), so the oracle cannot write"):
        _substrate_writer("ah", None, with_escrow.chains["ah"], with_escrow.oracle)
    plain = substrate_settings(chop.url, db_url, "0x" + "01" * 32, ws_url=chop.ws_url, retirement_account="0x" + "7e" * 32)
    writer = _substrate_writer("ah", None, plain.chains["ah"], plain.oracle)
    assert writer.has_call("Assets", "transfer") and not writer.has_call("Contracts", "call")
    assert writer.retirement_account == "0x" + "7e" * 32  # the configured one, where the indexer looks for retirements
    writer.si.close()
