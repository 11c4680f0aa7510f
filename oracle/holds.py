"""Payment holds behind off-chain auction bids: captured when the bid wins, released when it cannot.

A fiat bid is a Stripe PaymentIntent with capture_method=manual (`requires_capture`), accepted by oracle.payments and
written as `Auction.bidOffchain`. Every round (with the auction keeper) each undecided hold is weighed against the
indexed chain:
- its payment was flagged (refused by the gate, or its write refused on chain): release;
- its bid is indexed and a later bid on the same auction is too (outbid), or the auction is over without it
  winning (settled to another bid, or unsold): release;
- the auction is settled and its trade carries this payment's reference (the bid won): capture.
Only what the chain has finalized counts (bids, trades and the auction's state at the indexer's finalized block):
a cancelled hold cannot be restored, so a reorg must not be able to turn a released loser into the winner.
Otherwise it waits. The decision is stored (`oracle_payment.hold`) only after Stripe accepted the capture or the
cancellation; a failed call is tried again next round, and Stripe answering that the PaymentIntent is already in
that state counts as done, so a crash between the call and the update repeats nothing harmful.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("carbonledger.oracle.holds")

_UNDECIDED = """
WITH fin AS (SELECT finalized_number AS n FROM indexer_cursor WHERE chain = %(chain)s)
SELECT p.payment_id, p.payment_ref, p.status,
       (SELECT b.block_number FROM auction_bid b, fin WHERE b.chain = p.chain AND b.auction_id = p.target_id
          AND b.payment_ref = p.payment_ref AND b.block_number <= fin.n) AS bid_block,
       EXISTS (SELECT 1 FROM auction_bid b, auction_bid mine, fin WHERE mine.chain = p.chain
          AND mine.auction_id = p.target_id AND mine.payment_ref = p.payment_ref AND b.chain = p.chain
          AND b.auction_id = p.target_id AND b.block_number <= fin.n
          AND (b.block_number, b.log_index) > (mine.block_number, mine.log_index)) AS outbid,
       (SELECT a.status FROM auction a, fin WHERE a.chain = p.chain AND a.auction_id = p.target_id
          AND a.valid_from <= fin.n AND (a.valid_to IS NULL OR a.valid_to > fin.n)) AS auction_status,
       EXISTS (SELECT 1 FROM trade t, fin WHERE t.chain = p.chain AND t.auction_id = p.target_id
          AND t.payment_ref = p.payment_ref AND t.block_number <= fin.n) AS won
FROM oracle_payment p
WHERE p.provider = 'stripe' AND p.contract = 'Auction' AND p.hold IS NULL AND p.chain = %(chain)s
ORDER BY p.created_at LIMIT 200"""


def decide(status: str, bid_block: int | None, outbid: bool, auction_status: str | None, won: bool) -> str | None:
    """capture | release | None (wait) for one hold."""
    if status == "flagged":
        return "release"
    if won:
        return "capture"
    if bid_block is not None and outbid:
        return "release"
    if auction_status in ("settled", "unsold"):
        return "release" if bid_block is not None else None  # not indexed yet: the write may still be coming
    return None


def settle_holds(pool: Any, chain: str, settings: Any) -> dict[str, int]:
    """One round: capture or release what can be decided; returns counts."""
    import stripe

    from oracle.ingress.stripe_webhook import client

    with pool.connection() as conn:
        rows = conn.execute(_UNDECIDED, {"chain": chain}).fetchall()
    done = {"captured": 0, "released": 0, "failed": 0}
    todo = [(r[0], decide(r[2], r[3], r[4], r[5], r[6])) for r in rows]
    todo = [(pi, what) for pi, what in todo if what is not None]
    if not todo or settings.stripe_api_key is None:
        return done
    api = client(settings).v1.payment_intents
    for pi_id, what in todo:
        try:
            if what == "capture":
                api.capture(pi_id)
            else:
                api.cancel(pi_id)
        except stripe.InvalidRequestError as err:  # already captured / canceled (a repeat after a crash) is done
            state = _state(api, pi_id)
            if state != ("succeeded" if what == "capture" else "canceled"):
                done["failed"] += 1
                log.warning("payment hold not settled", extra={"payment_intent": pi_id, "action": what,
                                                                "error": str(err)[:200], "state": state})
                continue
        except stripe.StripeError as err:
            done["failed"] += 1
            log.warning("payment hold not settled, retrying next round",
                        extra={"payment_intent": pi_id, "action": what, "error": str(err)[:200]})
            continue
        decided = "captured" if what == "capture" else "released"
        with pool.connection() as conn:
            conn.execute("UPDATE oracle_payment SET hold = %s WHERE provider = 'stripe' AND payment_id = %s"
                         " AND hold IS NULL", (decided, pi_id))
        done[decided] += 1
        log.info("payment hold " + decided, extra={"payment_intent": pi_id})
    return done


def _state(api: Any, pi_id: str) -> str | None:
    try:
        return api.retrieve(pi_id).status
    except Exception:  # noqa: BLE001 - only for the log line and the done/not-done decision
        return None
