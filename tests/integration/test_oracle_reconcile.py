"""Reconciliation against localstripe: a succeeded PaymentIntent whose webhook never came gets its intent (once)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from carbonledger.anvil import free_port
from oracle.reconciliation import reconcile_mpesa, reconcile_stripe, stuck_transactions
from oracle.testing import FakeDaraja, Rig, count_events, payment_event, wait_until
from tests.integration.oracle_fixtures import _no_key_in_logs, anyio_backend  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.anvil, pytest.mark.anyio]


@pytest.fixture()
def localstripe():
    port = free_port()
    exe = Path(sys.executable).with_name("localstripe")
    proc = subprocess.Popen([str(exe), "--port", str(port), "--from-scratch"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            httpx.get(url + "/v1/customers", auth=("sk_test_x", ""), timeout=1)
            return True
        except httpx.HTTPError:
            return False
    try:
        wait_until(up, 20, 0.1, "localstripe")
        yield url
    finally:
        proc.terminate()
        proc.wait(5)


async def test_stripe_reconciliation_fills_missing_intents(db_url, anvil, localstripe):
    import stripe

    with FakeDaraja() as daraja:
        rig = Rig(db_url, anvil, daraja_url=daraja.url, stripe_api_key="sk_test_x", stripe_api_base=localstripe)
        try:
            w = rig.world
            client = stripe.StripeClient("sk_test_x", base_addresses={"api": localstripe})
            pm = client.v1.payment_methods.create(params={"type": "card", "card": {
                "number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}})
            made = []
            for meta in ({"order_id": str(w.order_ids[0])},
                         {"listing_id": str(w.listing_id), "buyer": w.w3.eth.accounts[3], "amount": "2"}, {}):
                pi = client.v1.payment_intents.create(params={"amount": 500, "currency": "usd", "payment_method": pm.id,
                                                              "confirm": True, "metadata": meta})
                assert pi.status == "succeeded"
                made.append(pi.id)
            client.v1.payment_intents.create(params={"amount": 500, "currency": "usd", "metadata": {"order_id": "2"}})
            # the first one's webhook did arrive; the second's was lost; the third pays for nothing on chain
            r = await rig.post_event(payment_event(made[0], {"order_id": str(w.order_ids[0])}))
            assert r.status_code == 200
            assert reconcile_stripe(rig.pool, "local", rig.settings) == 1
            assert reconcile_stripe(rig.pool, "local", rig.settings) == 0  # idempotent
            rig.drain()
            assert rig.status(f"stripe:{made[0]}") == rig.status(f"stripe:{made[1]}") == "confirmed"
            assert rig.status(f"stripe:{made[2]}") is None
            assert len(count_events(w.w3, w.contract("Escrow"), "Funded")) == 1
            assert len(count_events(w.w3, w.contract("Marketplace"), "Sold")) == 1
            # M-Pesa: a push whose callback never came is asked about
            from oracle import records

            records.save_mpesa_request(rig.pool, "m-1", "ws_CO_lost", 10, {"order_id": "1"})
            records.save_mpesa_request(rig.pool, "m-2", "ws_CO_gone", 10, {"order_id": "1"})
            daraja.results.update({"ws_CO_lost": "0", "ws_CO_gone": "1032"})
            from anyio import to_thread

            assert await to_thread.run_sync(lambda: reconcile_mpesa(rig.pool, rig.settings, older_than_s=0)) == 2
            with rig.pool.connection() as c:
                st = dict(c.execute("SELECT checkout_request_id, status FROM oracle_mpesa_request").fetchall())
            assert st == {"ws_CO_lost": "paid_no_callback", "ws_CO_gone": "failed"}
            assert stuck_transactions(rig.pool, 0.0) == 0
        finally:
            rig.close()
