"""Reconciliation against localstripe: a succeeded PaymentIntent whose webhook never came is decided (once), through
the same checks as a webhook's."""

from __future__ import annotations

import pytest

from oracle.reconciliation import reconcile_mpesa, reconcile_stripe, stuck_transactions
from oracle.testing import FakeDaraja, count_events, payment_event
from tests.integration.oracle_rig import Rig
from tests.integration.oracle_fixtures import _no_key_in_logs, anyio_backend, localstripe  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.anvil, pytest.mark.anyio]


async def test_stripe_reconciliation_fills_missing_intents(db_url, anvil, localstripe):
    with FakeDaraja() as daraja:
        rig = Rig(db_url, anvil, daraja_url=daraja.url, stripe=localstripe, reconcile_lookback_s=600)
        try:
            w = rig.world
            made = []
            for meta in ({"order_id": str(w.order_ids[0])},
                         {"listing_id": str(w.listing_id), "buyer": w.w3.eth.accounts[3], "amount": "2"}, {},
                         {"order_id": str(w.order_ids[1])}):
                pi = localstripe.payment_intent(meta, amount=1099)
                assert pi["status"] == "succeeded"
                made.append(pi["id"])
            localstripe.payment_intent({"order_id": str(w.order_ids[2])}, paid=False)
            underpaid = localstripe.payment_intent({"order_id": str(w.order_ids[2])}, amount=999)["id"]
            # the 1st and 4th webhooks arrived, the 2nd's was lost, the 3rd pays for nothing on chain; the unpaid
            # one is skipped and the underpaid one (999 cents for a 1002 wei order) is flagged, never written
            r = await rig.post_event(payment_event(made[0], {"order_id": str(w.order_ids[0])}))
            assert r.status_code == 200
            r = await rig.post_event(payment_event(made[3], {"order_id": str(w.order_ids[1])}))
            assert r.status_code == 200
            assert reconcile_stripe(rig.pool, "local", rig.settings) == 1
            assert reconcile_stripe(rig.pool, "local", rig.settings) == 0  # idempotent
            rig.drain()
            assert rig.status(f"stripe:{made[0]}") == rig.status(f"stripe:{made[1]}") == "confirmed"
            assert rig.status(f"stripe:{made[2]}") is None and rig.status(f"stripe:{underpaid}") is None
            with rig.pool.connection() as c:
                flags = dict(c.execute("SELECT event_id, flag FROM oracle_provider_event WHERE flag IS NOT NULL"))
            assert flags == {f"recon:{underpaid}": "amount_mismatch"}
            assert len(count_events(w.w3, w.contract("Escrow"), "Funded")) == 2
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
