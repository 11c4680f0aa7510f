"""Exactly once under chaos: 1,000 payments delivered 1,300 times (30% duplicates, shuffled) to two oracle
processes, the nonce owner SIGKILLed over and over, anvil frozen (SIGSTOP) for a while. Every payment must be on
chain exactly once (counted from the contract's Sold events), nothing lost, and no log line holds the key."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest

from core.anvil import Anvil, free_port
from indexer.testing import index_once
from oracle.testing import (ORACLE_KEY, LocalStripe, OracleProcess, count_events, deploy_world, payment_event, signed,
                            wait_until, write_config)
from store.engine import libpq_url
from tests import seeds

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

PAYMENTS = int(os.environ.get("CHAOS_PAYMENTS", "1000"))
KILLS = int(os.environ.get("CHAOS_KILLS", "12"))
SPREAD_S = float(os.environ.get("CHAOS_SPREAD_S", "25"))


def test_exactly_once_under_kills_and_a_frozen_node(db_url, tmp_path):
    rng = seeds.rng(5)
    with Anvil() as anvil, LocalStripe() as stripe_api:
        world = deploy_world(anvil.url, listing_amount=10 * PAYMENTS)
        index_once(anvil.url, world.deployment, db_url)  # the oracles check every payment against the indexed listing
        dep_file = tmp_path / "deployment.json"
        world.deployment.write(dep_file)
        procs = []
        for i in range(2):
            port = free_port()
            cfg = write_config(tmp_path / f"oracle{i}.toml", rpc_url=anvil.url, deployment_file=dep_file, db_url=db_url,
                               port=port, extra="lease_heartbeat_s = 0.5\nreconcile_interval_s = 3600.0",
                               stripe_url=stripe_api.url)
            procs.append(OracleProcess(cfg, port, tmp_path / f"oracle{i}.log"))
        try:
            _run(world, procs, anvil, db_url, rng, stripe_api)
        finally:
            for p in procs:
                p.kill()


def _run(world, procs, anvil, db_url, rng, stripe_api) -> None:
    """Deliver, kill, freeze, then check the chain."""
    for p in procs:
        p.start(wait=False)
    buyer = world.w3.eth.accounts[3]
    meta = {"listing_id": str(world.listing_id), "buyer": buyer, "amount": "1"}
    with ThreadPoolExecutor(4) as pool:  # real PaymentIntents: each oracle re-fetches the one it is told about
        pis = list(pool.map(lambda _: stripe_api.payment_intent(meta)["id"], range(PAYMENTS)))
    for p in procs:
        p.wait_ready()
    events = [payment_event(pi, meta) for pi in pis]
    deliveries = events + [rng.choice(events) for _ in range(int(PAYMENTS * 0.3))]
    rng.shuffle(deliveries)
    failures: list[str] = []

    http = httpx.Client(timeout=5)  # one client: building one per request costs ~80 ms of TLS setup

    gap = SPREAD_S * 8 / len(deliveries)  # 8 threads: spread the load over the chaos window

    def deliver(event: dict) -> None:
        time.sleep(rng.uniform(0, 2 * gap))
        tries = 0
        if True:
            while True:
                tries += 1
                p = rng.choice(procs)
                body, headers = signed(event)  # Stripe re-signs every attempt
                try:
                    r = http.post(p.url + "/webhooks/stripe", content=body, headers=headers)
                    if r.status_code == 200:
                        return
                    if r.status_code < 500:
                        failures.append(f"{r.status_code} {r.text}")
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.05 * min(tries, 10))

    def owner_proc() -> OracleProcess | None:
        with psycopg.connect(libpq_url(db_url)) as c:
            row = c.execute("SELECT owner FROM oracle_lease").fetchone()
        if row is None:
            return None
        pid = int(row[0].split(":")[1])
        return next((p for p in procs if p.proc and p.proc.pid == pid), None)

    kills = 0

    def chaos() -> None:
        nonlocal kills
        while kills < KILLS:
            time.sleep(rng.uniform(0.3, 1.0))
            victim = (owner_proc() if rng.random() < 0.8 else None) or rng.choice(procs)
            victim.kill()
            kills += 1
            if kills == KILLS // 2:  # freeze the node too: sends time out, receipts stop
                os.kill(anvil.proc.pid, signal.SIGSTOP)
                time.sleep(5.0)
                os.kill(anvil.proc.pid, signal.SIGCONT)
            time.sleep(0.1)
            victim.start(wait=False)
            victim.wait_ready(60)  # every kill hits a running process, not one still importing

    t0 = time.monotonic()
    chaos_thread = threading.Thread(target=chaos, daemon=True)
    chaos_thread.start()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(deliver, deliveries))
    t_delivered = time.monotonic() - t0
    chaos_thread.join(timeout=120)
    assert not failures, failures[:3]
    assert kills >= 10
    for p in procs:
        if p.proc.poll() is not None:
            p.start(wait=False)
    for p in procs:
        p.wait_ready()

    def settled() -> bool:
        with psycopg.connect(libpq_url(db_url)) as c:
            return c.execute("SELECT count(*) FROM oracle_intent WHERE status = 'confirmed'").fetchone()[0] == PAYMENTS
    wait_until(settled, 180, 0.5, "all intents confirmed")
    elapsed = time.monotonic() - t0

    sold = count_events(world.w3, world.contract("Marketplace"), "Sold")
    refs = [s["paymentRef"] for s in sold]
    assert len(refs) == len(set(refs)), "a payment was recorded twice"
    assert set(refs) == {e["data"]["object"]["id"] for e in events}, "a payment is missing"
    with psycopg.connect(libpq_url(db_url)) as c:
        assert c.execute("SELECT count(*) FROM oracle_intent").fetchone()[0] == PAYMENTS
        assert c.execute("SELECT count(*) FROM oracle_provider_event").fetchone()[0] == PAYMENTS
        skipped = c.execute("SELECT count(*) FROM oracle_intent WHERE already_on_chain").fetchone()[0]
        epochs = c.execute("SELECT epoch FROM oracle_lease").fetchone()[0]
        maybe = c.execute("SELECT count(*) FROM oracle_attempt WHERE broadcast_error LIKE 'maybe sent%'").fetchone()[0]
    metrics = "".join(httpx.get(p.url + "/metrics", timeout=10).text for p in procs)
    assert f'oracle_intents{{status="confirmed"}} {float(PAYMENTS)}' in metrics and "oracle_signer_balance_wei" in metrics
    assert "oracle_nonce_owner 1.0" in metrics
    for p in procs:
        assert p.terminate() == 0  # graceful SIGTERM
    logs = "".join(p.log_path.read_text(errors="replace") for p in procs)
    assert ORACLE_KEY[2:].lower() not in logs.lower()
    print(json.dumps({"payments": PAYMENTS, "deliveries": len(deliveries), "kills": kills, "precheck_skipped": skipped, "lease_epochs": epochs, "maybe_sent_broadcasts": maybe, "delivered_s": round(t_delivered, 1),
                      "seconds": round(elapsed, 1)}))
