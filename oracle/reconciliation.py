"""Scheduled jobs (apscheduler): IoT anchoring, Stripe and M-Pesa reconciliation, stuck-transaction watch.

Reconciliation closes the gap a lost webhook leaves: every recently succeeded PaymentIntent is fed through the
same `derive` as a webhook (provider "stripe-recon"), so an intent that exists is found by its key and one that
does not is created. Pending M-Pesa pushes are asked about; only the callback carries the receipt number, so a
paid push without one is flagged `paid_no_callback` for a person rather than guessed at.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from oracle import outbox, records
from oracle.ingress import stripe_webhook

log = logging.getLogger("carbonledger.oracle.reconcile")


def reconcile_stripe(pool: Any, chain: str, settings: Any, now: float | None = None) -> int:
    """Create intents for succeeded PaymentIntents that have none; returns how many were new."""
    import stripe

    if settings.stripe_api_key is None:
        return 0
    base = settings.stripe_api_base
    client = stripe.StripeClient(settings.stripe_api_key.get_secret_value(),
                                 base_addresses={"api": base} if base else {})
    since = int((now or time.time()) - settings.reconcile_lookback_s)
    new = 0
    try:
        page = client.v1.payment_intents.list(params={"limit": 100, "created": {"gte": since}})
    except stripe.InvalidRequestError:  # some Stripe stand-ins (localstripe) lack the filter: filter here
        page = client.v1.payment_intents.list(params={"limit": 100})
    for pi in page.auto_paging_iter():
        obj = pi.to_dict()
        if obj.get("status") != "succeeded" or int(obj.get("created") or 0) < since:
            continue
        event = {"id": f"recon:{obj['id']}", "type": "payment_intent.succeeded", "data": {"object": obj}}
        ev, intent = stripe_webhook.derive(event)
        if intent is None:
            continue
        ev = outbox.Event("stripe-recon", ev.event_id, ev.type, ev.summary, ev.payment_ref, ev.flag)
        rec = outbox.record(pool, chain, ev, intent)
        if rec.new_intent:
            new += 1
            log.warning("reconciliation created a missing intent", extra={"intent": intent.key})
    return new


def reconcile_mpesa(pool: Any, settings: Any, older_than_s: float = 120.0) -> int:
    """Ask Daraja about pushes still pending; mark failed ones, flag paid ones whose callback never came."""
    from oracle.runtime import make_daraja

    with pool.connection() as conn:
        rows = conn.execute("SELECT checkout_request_id FROM oracle_mpesa_request WHERE status = 'pending'"
                            " AND created_at < now() - make_interval(secs => %s) LIMIT 100", (older_than_s,)).fetchall()
    if not rows:
        return 0
    daraja = make_daraja(settings)
    if daraja is None:
        return 0

    async def ask() -> list[tuple[str, int | None]]:
        out = []
        try:
            for (cid,) in rows:
                try:
                    out.append((cid, await daraja.stk_query(cid)))
                except Exception:  # noqa: BLE001 - try again next round
                    out.append((cid, None))
        finally:
            await daraja.aclose()
        return out

    changed = 0
    with pool.connection() as conn, conn.transaction():
        for cid, code in asyncio.run(ask()):
            if code is None or code in (4999, 500001001):  # still being processed
                continue
            status = "paid_no_callback" if code == 0 else "failed"
            conn.execute("UPDATE oracle_mpesa_request SET status = %s, result_code = %s, updated_at = now()"
                         " WHERE checkout_request_id = %s AND status = 'pending'", (status, code, cid))
            changed += 1
            if code == 0:
                log.warning("M-Pesa push paid but no callback; needs the receipt number", extra={"checkout": cid})
    return changed


def stuck_transactions(pool: Any, after_s: float) -> int:
    with pool.connection() as conn:
        n = conn.execute("SELECT count(*) FROM oracle_intent WHERE status IN ('signed', 'sent')"
                         " AND updated_at < now() - make_interval(secs => %s)", (after_s,)).fetchone()[0]
    if n:
        log.warning("stuck transactions", extra={"count": n})
    return n


def run_anchor(pool: Any, chain: str, settings: Any) -> str | None:
    key = records.anchor_pending(pool, chain, settings.anchor_max_leaves)
    if key:
        log.info("IoT anchor queued", extra={"intent": key})
    return key


def schedule(pool: Any, chain: str, settings: Any) -> Any:
    """A started BackgroundScheduler with the oracle's jobs (each job at most one instance at a time)."""
    from apscheduler.schedulers.background import BackgroundScheduler

    def guarded(fn: Any, *args: Any) -> Any:
        def job() -> None:
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - a failed round is retried by the next one
                log.exception("scheduled job failed", extra={"job": fn.__name__})
        return job

    sched = BackgroundScheduler(job_defaults={"coalesce": True, "max_instances": 1})
    sched.add_job(guarded(run_anchor, pool, chain, settings), "interval", seconds=settings.anchor_interval_s, id="anchor")
    sched.add_job(guarded(reconcile_stripe, pool, chain, settings), "interval", seconds=settings.reconcile_interval_s,
                  id="stripe")
    sched.add_job(guarded(reconcile_mpesa, pool, settings), "interval", seconds=settings.reconcile_interval_s, id="mpesa")
    sched.add_job(guarded(stuck_transactions, pool, settings.stuck_after_s), "interval",
                  seconds=settings.reconcile_interval_s, id="stuck")
    sched.start()
    return sched
