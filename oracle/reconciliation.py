"""Scheduled jobs (apscheduler): IoT anchoring, Stripe and M-Pesa reconciliation, pending payments, stuck-tx watch,
the auction keeper (oracle.keeper).

Reconciliation closes the gap a lost webhook leaves: every recently succeeded PaymentIntent (or authorised hold, an
auction's fiat bid) Stripe's API lists is assessed and settled exactly as a webhook's re-fetched PaymentIntent is (provider "stripe-recon"), so a payment
already decided is found by its PaymentIntent id and one that is not is decided now, through the same checks.
Pending M-Pesa pushes are asked about; only the callback carries the receipt number, so a paid push without one is
flagged `paid_no_callback` for a person rather than guessed at. Payments waiting for their listing/order to be
indexed are evaluated again every `payment_recheck_s`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from oracle import holds, keeper, outbox, payments, records
from oracle.ingress import stripe_webhook

log = logging.getLogger("carbonledger.oracle.reconcile")


# What a lost webhook would have said, by PaymentIntent status: a payment taken, or a hold authorised (an auction's
# fiat bid: capture_method=manual, captured only if the bid wins).
_DECIDABLE = {"succeeded": "payment_intent.succeeded", "requires_capture": stripe_webhook.HOLD_EVENT}


def reconcile_stripe(pool: Any, chain: str, settings: Any, now: float | None = None) -> int:
    """Decide succeeded PaymentIntents and authorised holds no webhook brought; returns how many got a new write
    intent."""
    import stripe

    if settings.stripe_api_key is None:
        return 0
    client = stripe_webhook.client(settings)
    since = int((now or time.time()) - settings.reconcile_lookback_s)
    new = 0
    try:
        page = client.v1.payment_intents.list(params={"limit": 100, "created": {"gte": since}})
    except stripe.InvalidRequestError:  # some Stripe stand-ins (localstripe) lack the filter: filter here
        page = client.v1.payment_intents.list(params={"limit": 100})
    for pi in page.auto_paging_iter():
        obj = pi.to_dict()
        status = obj.get("status")
        if status not in _DECIDABLE or not isinstance(obj.get("created"), int) or obj["created"] < since \
                or not isinstance(obj.get("id"), str) or len(obj["id"]) > 255:
            continue
        hint = outbox.Event("stripe-recon", f"recon:{obj['id']}", _DECIDABLE[status], {}, obj["id"])
        event, claim = stripe_webhook.assess(hint, obj, settings)
        if claim is None and event.flag is None:
            continue  # pays for nothing on chain
        out = payments.settle(pool, chain, event, claim, settings)
        if out.status == "accepted" and not out.duplicate:
            new += 1
            log.warning("reconciliation decided a payment no webhook brought", extra={"intent": out.intent_key})
    return new


def reconcile_mpesa(pool: Any, settings: Any, older_than_s: float = 120.0) -> int:
    """Ask Daraja about pushes still pending; mark failed ones, flag paid ones whose callback never came."""
    from oracle.ingress.mpesa import make_daraja

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
    sched.add_job(guarded(payments.recheck_pending, pool, chain, settings), "interval",
                  seconds=settings.payment_recheck_s, id="pending_payments")
    sched.add_job(guarded(stuck_transactions, pool, settings.stuck_after_s), "interval",
                  seconds=settings.reconcile_interval_s, id="stuck")
    sched.add_job(guarded(keeper.settle_ended_auctions, pool, chain, settings.stuck_after_s), "interval",
                  seconds=settings.auction_keeper_s, id="auctions")
    sched.add_job(guarded(holds.settle_holds, pool, chain, settings), "interval", seconds=settings.auction_keeper_s,
                  id="holds")
    sched.start()
    return sched
