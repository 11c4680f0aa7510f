"""The oracle on Aptos (stand-in fullnode): fiat payments become `marketplace::settle_offchain` and IoT roots
`iot_verification::store_data_hash` exactly once although `carbonledger oracle run` is SIGKILLed again and again
mid-way; a repeated write is found done by the `/v1/view` pre-check (no transaction); the indexer then finds each
write once."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import psycopg

from chains.aptos.values import address
from chains.base import TxState
from indexer.runner import run_once
from oracle.outbox import Intent, insert_intent
from store.engine import libpq_url
from tests import seeds
from tests.integration.test_aptos_indexer import aptos_settings
from tests.unit.aptos_fixtures import aptos, send  # noqa: F401 - fixture

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
SEED = "0x" + "a7" * 32
ROOTS = ["0x" + bytes([k]).hex() * 32 for k in range(1, 9)]
REFS = [f"pi_{k}" for k in range(8)]


def _statuses(db_url: str) -> list[str]:
    with psycopg.connect(libpq_url(db_url)) as conn:
        return [r[0] for r in conn.execute("SELECT status FROM oracle_intent ORDER BY id")]


def _progress(db_url: str) -> int:
    with psycopg.connect(libpq_url(db_url)) as conn:
        return conn.execute("SELECT count(*) FROM oracle_attempt").fetchone()[0] + \
            conn.execute("SELECT count(*) FROM oracle_intent WHERE status = 'confirmed'").fetchone()[0]


def test_writes_exactly_once_across_kills_and_view_precheck(aptos, db_url, tmp_path):
    from aptos_sdk.account import Account

    w = aptos
    key = Account.load_key("ed25519-priv-" + SEED)
    w.node.grant("oracle", str(key.address()))
    buyer = address(str(w.bob.address()))
    assert send(w.writer["admin"], "carbon_credit", "create_batch", "P", 2021, "M", "R", "S", "0x" + "ab" * 32).state \
        is TxState.MINED
    assert send(w.writer["admin"], "CarbonCredit", "mint", str(w.alice.address()), 1, 100, "0x" + "01" * 32).state \
        is TxState.MINED
    assert send(w.writer["alice"], "Marketplace", "list", 1, 50, 7).state is TxState.MINED
    with psycopg.connect(libpq_url(db_url)) as conn, conn.transaction():
        for k, (root, ref) in enumerate(zip(ROOTS, REFS)):
            insert_intent(conn.cursor(), "apt", Intent(f"iot:{k}", "iot", "IoTAnchor", "anchor",
                                                       [root, 4 + k, 1_700_000_000, 1_700_000_600, 90]))
            insert_intent(conn.cursor(), "apt", Intent(f"stripe:{k}", "stripe", "Marketplace", "settleOffchain",
                                                       ["1", buyer, str(k % 3 + 1), ref]))
    # A block every 0.25 s (empty ones too: the ledger's clock moves on, as a real network's does): transactions sit
    # in the mempool for a while, so kills land while they are pending too.
    w.node.auto_commit = False
    stop = threading.Event()
    blocks = threading.Thread(target=lambda: [w.node.commit() for _ in iter(lambda: stop.wait(0.25), True)],
                              daemon=True)
    blocks.start()
    cfg = tmp_path / "oracle.toml"
    cfg.write_text(f'[database]\nurl = "{db_url}"\n[chains.apt]\nfamily = "aptos"\nrpc_url = "{w.url}"\n'
                   f'aptos_package = "{w.package}"\nchain_id = 4\n[oracle]\nchain = "apt"\nport = 0\n'
                   f'anchor_interval_s = 3600\npoll_interval_s = 0.05\nlease_heartbeat_s = 0.2\nmax_in_flight = 2\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONLEDGER_")}
    env["CARBONLEDGER_SIGNER_KEY"] = SEED

    logs = tmp_path / "oracle.log"

    def spawn() -> subprocess.Popen:
        with logs.open("ab") as err:
            return subprocess.Popen([sys.executable, "-m", "carbonledger.cli", "oracle", "run", "--config", str(cfg)],
                                    cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)

    rng = seeds.rng(5)
    kills = 0
    try:
        while kills < 6 and any(s != "confirmed" for s in _statuses(db_url)):
            before = _progress(db_url)
            proc = spawn()
            deadline = time.monotonic() + 60
            while _progress(db_url) == before and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)  # until it has signed or confirmed something
            assert proc.poll() is None, logs.read_text()[-3000:]
            time.sleep(rng.uniform(0.0, 0.5))
            proc.kill()
            proc.wait()
            kills += 1
        with psycopg.connect(libpq_url(db_url)) as conn, conn.transaction():  # the same payment, a second intent
            insert_intent(conn.cursor(), "apt", Intent("stripe:again", "stripe", "Marketplace", "settleOffchain",
                                                       ["1", buyer, "1", REFS[0]]))
        proc = spawn()
        try:
            deadline = time.monotonic() + 120
            while any(s != "confirmed" for s in _statuses(db_url)) and time.monotonic() < deadline:
                assert proc.poll() is None, logs.read_text()[-3000:]
                time.sleep(0.1)
            assert _statuses(db_url) == ["confirmed"] * (2 * len(ROOTS) + 1), logs.read_text()[-3000:]
        finally:
            proc.terminate()
            proc.wait(30)
    finally:
        stop.set()
        blocks.join(5)
    assert kills >= 3
    with psycopg.connect(libpq_url(db_url)) as conn:
        again = conn.execute("SELECT already_on_chain, tx_hash, error FROM oracle_intent "
                             "WHERE idempotency_key = 'stripe:again'").fetchone()
    assert again == (True, None, "already on chain (paymentRefUsed)")  # the view said so: no transaction
    # The chain's own word, through the indexer: each root stored once, each payment settled once, by the oracle's
    # key, in the transaction the outbox names; no aborted write (a repeat would have aborted on chain).
    user = [t for t in w.node.ledger if t["type"] == "user_transaction"]
    assert all(t["success"] for t in user if address(t["sender"]) == address(str(key.address())))
    assert run_once(aptos_settings(w, db_url), db_url=db_url, timeout_s=120) == 0
    with psycopg.connect(libpq_url(db_url)) as conn:
        anchors = dict(conn.execute("SELECT root, tx_hash FROM iot_anchor").fetchall())
        trades = dict(conn.execute("SELECT payment_ref, tx_hash FROM trade WHERE payment_ref IS NOT NULL").fetchall())
        errors = conn.execute("SELECT message FROM indexing_error").fetchall()
        intents = dict(conn.execute("SELECT args->>0, tx_hash FROM oracle_intent WHERE function = 'anchor'").fetchall())
        paid = dict(conn.execute("SELECT args->>3, tx_hash FROM oracle_intent WHERE function = 'settleOffchain' "
                                 "AND NOT already_on_chain").fetchall())
        sold = conn.execute("SELECT count(*) FROM trade WHERE payment_ref IS NOT NULL").fetchone()[0]
    assert errors == []
    assert anchors == intents and sorted(anchors) == ROOTS
    assert trades == paid and sorted(trades) == REFS and sold == len(REFS)


def test_aborts_are_failed_intents_with_the_abort_decoded(aptos, db_url):
    """In process: two settlements that each pass the simulation but not both (the listing holds 5, each takes 4):
    the second commits as a Move abort and its intent fails with the abort decoded; a settlement of a listing that
    does not exist is refused by the simulation before any sequence number is spent."""
    from psycopg_pool import ConnectionPool

    from chains.aptos.writer import AptosWriter
    from core.config import Settings
    from oracle.aptos_sender import AptosSender

    w = aptos
    writer = AptosWriter.from_secret("apt", w.url, bytes.fromhex(SEED[2:]), w.package, chain_id=4)
    w.node.grant("oracle", writer.address())
    assert send(w.writer["admin"], "carbon_credit", "create_batch", "P", 2021, "M", "R", "S", "0x" + "ab" * 32).state \
        is TxState.MINED
    assert send(w.writer["admin"], "CarbonCredit", "mint", str(w.alice.address()), 1, 5, "0x" + "01" * 32).state \
        is TxState.MINED
    assert send(w.writer["alice"], "Marketplace", "list", 1, 5, 7).state is TxState.MINED
    buyer = address(str(w.bob.address()))
    with psycopg.connect(libpq_url(db_url)) as conn, conn.transaction():
        for key, listing, ref in (("a", "1", "pi_a"), ("b", "1", "pi_b"), ("c", "99", "pi_c")):
            insert_intent(conn.cursor(), "apt", Intent(key, "stripe", "Marketplace", "settleOffchain",
                                                       [listing, buyer, "4", ref]))
    oracle = Settings(database={"url": db_url}, oracle={"max_in_flight": 4}).oracle  # the sender writes writer.chain
    pool = ConnectionPool(libpq_url(db_url), min_size=1, max_size=4, open=True)
    sender = AptosSender(libpq_url(db_url), pool, writer, oracle, "test", threading.Event())
    try:
        deadline = time.monotonic() + 30
        while any(s in ("pending", "signed", "sent") for s in _statuses(db_url)) and time.monotonic() < deadline:
            if not sender.run_once():
                time.sleep(0.05)
        with psycopg.connect(libpq_url(db_url)) as conn:
            rows = conn.execute("SELECT idempotency_key, status, nonce, error FROM oracle_intent ORDER BY id").fetchall()
    finally:
        sender.lease.release()
        pool.close()
        writer.client.close()
    assert [(k, s) for k, s, _, _ in rows] == [("a", "confirmed"), ("b", "failed"), ("c", "failed")], rows
    pkg = "0x" + w.package[2:].lstrip("0")
    assert rows[1][3] == (f"Move abort in {pkg}::marketplace: E_NOT_ENOUGH(0x10004): The listing holds fewer credits "
                          "than asked.") and rows[1][2] is not None  # sent, committed, aborted
    assert rows[2][3].startswith(f"Move abort in {pkg}::marketplace: E_NO_LISTING(0x60001)") and rows[2][2] is None


def test_a_stripe_payment_names_an_aptos_buyer_and_settles_on_aptos(aptos, db_url, tmp_path):
    """The path a buyer takes: a PaymentIntent whose metadata names an Aptos account (0x + 64 hex) passes the
    oracle's checks against the indexed Aptos listing and becomes `settle_offchain` on chain; a 20-byte (EVM) buyer
    for the same listing is flagged, refund due, and nothing is written."""
    from aptos_sdk.account import Account
    from psycopg_pool import ConnectionPool

    from core.config import OracleSettings
    from oracle import payments
    from oracle.ingress import stripe_webhook
    from oracle.outbox import Event
    from oracle.testing import FIAT_RATES

    w = aptos
    key = Account.load_key("ed25519-priv-" + SEED)
    w.node.grant("oracle", str(key.address()))
    assert send(w.writer["admin"], "carbon_credit", "create_batch", "P", 2021, "M", "R", "S", "0x" + "cd" * 32).state \
        is TxState.MINED
    assert send(w.writer["admin"], "CarbonCredit", "mint", str(w.alice.address()), 1, 100, "0x" + "02" * 32).state \
        is TxState.MINED
    assert send(w.writer["alice"], "Marketplace", "list", 1, 50, 7).state is TxState.MINED
    assert run_once(aptos_settings(w, db_url), db_url=db_url, timeout_s=60) == 0
    settings = OracleSettings(fiat_rates=FIAT_RATES, chain="apt")
    bob = address(str(w.bob.address()))

    def pay(pi_id: str, buyer: str) -> payments.Outcome:
        pi = {"id": pi_id, "object": "payment_intent", "status": "succeeded", "livemode": False, "currency": "usd",
              "amount": 1000, "amount_received": 1000, "metadata": {"listing_id": "1", "buyer": buyer, "amount": "2"}}
        event, claim = stripe_webhook.assess(Event("stripe", f"evt_{pi_id}", "payment_intent.succeeded", {}, pi_id),
                                             pi, settings)
        assert claim is not None, event
        with ConnectionPool(libpq_url(db_url), min_size=1, max_size=1, open=True) as pool:
            return payments.settle(pool, "apt", event, claim, settings)

    evm = pay("pi_evm_buyer", "0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
    assert evm.status == "flagged" and evm.flag == "invalid_metadata" and "not an account of this chain" in evm.problem
    ok = pay("pi_aptos_buyer", bob)
    assert ok.status == "accepted" and ok.intent_key, ok
    cfg = tmp_path / "oracle.toml"
    cfg.write_text(f'[database]\nurl = "{db_url}"\n[chains.apt]\nfamily = "aptos"\nrpc_url = "{w.url}"\n'
                   f'aptos_package = "{w.package}"\nchain_id = 4\n[oracle]\nchain = "apt"\nport = 0\n'
                   f'anchor_interval_s = 3600\npoll_interval_s = 0.05\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONLEDGER_")}
    env["CARBONLEDGER_SIGNER_KEY"] = SEED
    proc = subprocess.Popen([sys.executable, "-m", "carbonledger.cli", "oracle", "run", "--config", str(cfg)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while _statuses(db_url) != ["confirmed"]:
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, _statuses(db_url)
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(30)
    assert run_once(aptos_settings(w, db_url), db_url=db_url, timeout_s=60) == 0
    with psycopg.connect(libpq_url(db_url)) as conn:
        trades = conn.execute("SELECT buyer, amount, payment_ref FROM trade WHERE chain = 'apt'").fetchall()
    assert [(b, int(a), r) for b, a, r in trades] == [(bob, 2, "pi_aptos_buyer")]
