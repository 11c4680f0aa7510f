"""The payment gate: a provider payment becomes an on-chain write only once, and only for what it pays for.

A `Claim` is what a verified provider says was paid: Stripe's PaymentIntent as re-fetched from Stripe's API, or an
M-Pesa callback Daraja's status query confirmed. `settle_in()` records the provider event and, in the same
transaction (the outbox rule), decides one of:

- **accepted**: the claim pays for an indexed listing or escrow order, in a configured currency, covering its
  on-chain price (`oracle.fiat_rates`), as much as was asked for (M-Pesa: the pushed amount), and the order is not
  paid already: one `oracle_payment` row and one write intent.
- **pending**: the listing/order is not indexed yet (the indexer lags the chain, or the id does not exist): nothing
  is written; `recheck_pending()` (scheduled every `oracle.payment_recheck_s`, and any redelivery) evaluates it
  again, and flags it `target_not_indexed` after `oracle.payment_pending_max_age_s`. Never written unchecked.
- **flagged**: recorded with a `flag` for a human (refund due, or a look): `amount_mismatch`, `currency_mismatch`,
  `double_paid`, `target_unavailable`, `conflicting_receipt`, `target_not_indexed`, `bid_too_low`,
  `hold_would_lapse` (and, decided before the gate, Stripe's `payment_not_succeeded`, `livemode_mismatch`,
  `payment_not_found`, `invalid_metadata`, `hold_captured`).

An auction bid (metadata `auction_id`, `bidder`, `price_per_unit`) is a payment hold, not a payment: accepted when the
indexed auction is open (by the chain's clock), the bid reaches its minimum (the reserve, or the highest bid, counting
accepted fiat bids not indexed yet, plus the increment) and the hold covers price x lot; written as
`Auction.bidOffchain`. oracle.holds captures the hold if the bid wins and releases it otherwise.

A listing's credits are counted as the chain will see them: its indexed `amount_remaining` less the credits of the
payments accepted for it that the indexer has not seen settled yet (queued, in flight, or mined but not indexed),
decided under a per-listing lock (a transaction-scoped advisory lock, so two oracles serialise too): two payments
that each fit but together do not are never both accepted. An accepted payment whose write the chain refuses all
the same (the buyer funded the order on chain while the indexer lagged, the seller cancelled the listing) is never
kept silently: `writes_failed()`, in the sender's transaction that marks the intent failed, flags the payment, its
provider events and its M-Pesa request `double_paid` (the order was paid another way) or `write_failed` (any other
refusal), refund due.

Invariant 8 is the database's, not only this code's: `oracle_payment`'s primary key (provider, payment_id) lets one
PaymentIntent or M-Pesa checkout be decided once; (provider, payment_ref) lets a receipt pay once; a partial unique
index lets an escrow order have one accepted off-chain payment. Two oracles racing on duplicate deliveries meet in
those indexes: one row, one intent, one write; the loser's event is linked to it or flagged.
Amounts stay integers (invariant 4): paid minor units x wei per currency unit >= price in wei x 10**decimals.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from typing import Any


from oracle.api.fields import parse
from oracle.api.models import AuctionBidTarget, OrderTarget, PaymentTarget
from oracle.ingress.common import BadRequest
from oracle.outbox import INTENT_INSERT, NOTIFY_CHANNEL, Event, Intent, insert_event, intent_params, intent_status

log = logging.getLogger("carbonledger.oracle.payments")

_RECHECK_BATCH = 200


@dataclass(frozen=True)
class Target:
    """What a payment pays for: an escrow order, `units` credits of a listing delivered to `buyer`, or a bid of
    `units` wei per credit for an auction's lot on behalf of `buyer` (the bidder)."""

    contract: str  # "Escrow" (an order) | "Marketplace" (a listing) | "Auction" (a bid backed by a payment hold)
    target_id: int
    buyer: str | None = None
    units: int | None = None  # listing: credits bought; auction: the bid's price per credit (wei)

    @classmethod
    def from_json(cls, d: Any, status: int = 422, code: str = "invalid_field") -> Target:
        """A `PaymentTarget` (checkout metadata, STK push targets) -> Target; BadRequest(status, code) else."""
        return cls.from_model(parse(PaymentTarget, d, status=status, code=code))

    @classmethod
    def from_model(cls, target: PaymentTarget) -> Target:
        t = target.root
        if isinstance(t, OrderTarget):
            return cls("Escrow", t.order_id)
        if isinstance(t, AuctionBidTarget):
            return cls("Auction", t.auction_id, t.bidder, t.price_per_unit)
        return cls("Marketplace", t.listing_id, t.buyer, t.amount)

    def to_json(self) -> dict[str, str]:
        if self.contract == "Escrow":
            return {"order_id": str(self.target_id)}
        if self.contract == "Auction":
            return {"auction_id": str(self.target_id), "bidder": str(self.buyer), "price_per_unit": str(self.units)}
        return {"listing_id": str(self.target_id), "buyer": str(self.buyer), "amount": str(self.units)}

    def intent(self, key: str, source: str, ref: str) -> Intent:
        if self.contract == "Escrow":
            return Intent(key, source, "Escrow", "recordOffchainPayment", [str(self.target_id), ref])
        if self.contract == "Auction":
            return Intent(key, source, "Auction", "bidOffchain", [str(self.target_id), self.buyer, str(self.units), ref])
        return Intent(key, source, "Marketplace", "settleOffchain", [str(self.target_id), self.buyer, str(self.units), ref])


@dataclass(frozen=True)
class Claim:
    """A verified provider's word that `amount` minor units (10**-decimals of `currency`) paid for `target`."""

    provider: str  # stripe | mpesa
    payment_id: str  # PaymentIntent id | CheckoutRequestID: decided at most once
    payment_ref: str  # the on-chain paymentRef: PaymentIntent id | M-Pesa receipt
    target: Target
    amount: int
    currency: str  # lowercase ISO 4217
    decimals: int = 2
    expected_amount: int | None = None  # M-Pesa: what the STK push asked for, in the same minor units

    @property
    def key(self) -> str:
        return f"{self.provider}:{self.payment_ref}"

    def to_json(self) -> dict[str, Any]:
        return {"provider": self.provider, "payment_id": self.payment_id, "payment_ref": self.payment_ref,
                "target": self.target.to_json(), "amount": str(self.amount), "currency": self.currency,
                "decimals": self.decimals,
                "expected_amount": None if self.expected_amount is None else str(self.expected_amount)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Claim:
        exp = d.get("expected_amount")
        return cls(d["provider"], d["payment_id"], d["payment_ref"], Target.from_json(d["target"]), int(d["amount"]),
                   d["currency"], int(d["decimals"]), None if exp is None else int(exp))


@dataclass(frozen=True)
class Outcome:
    status: str  # accepted | pending | flagged | recorded
    flag: str | None = None
    intent_key: str | None = None
    intent_status: str | None = None
    duplicate: bool = False  # nothing new: this event, or this payment, was decided so before
    problem: str | None = None


# ---- the decision ----------------------------------------------------------------------------------------------
# Credits of a listing's accepted payments whose Sold the indexer has not seen yet: still to come off its remaining.
_HELD = ("SELECT coalesce(sum(p.units), 0) FROM oracle_payment p WHERE p.chain = l.chain AND p.contract = 'Marketplace'"
         " AND p.target_id = l.listing_id AND p.status = 'accepted' AND NOT EXISTS (SELECT 1 FROM offchain_payment o"
         " WHERE o.chain = p.chain AND o.contract = 'Marketplace' AND o.payment_ref = p.payment_ref)")


# The highest price per credit of an auction's accepted fiat bids whose BidPlaced the indexer has not seen yet.
_BID_HELD = ("SELECT max(p.units) FROM oracle_payment p WHERE p.chain = a.chain AND p.contract = 'Auction'"
             " AND p.target_id = a.auction_id AND p.status = 'accepted' AND NOT EXISTS (SELECT 1 FROM auction_bid b"
             " WHERE b.chain = p.chain AND b.auction_id = p.target_id AND b.payment_ref = p.payment_ref)")


def _indexed(cur: Any, chain: str, t: Target) -> tuple | None:
    """The current indexed version of the order (amount, status, payment_ref), listing (price, credits left once
    the accepted payments not yet indexed are settled, status, seller) or auction (lot, reserve, increment, highest
    bid counting accepted fiat bids not yet indexed, status, end, seller, the indexed head's time)."""
    if t.contract == "Escrow":
        sql = ("SELECT amount, status, payment_ref FROM escrow_order WHERE chain = %s AND order_id = %s"
               " AND valid_to IS NULL")
    elif t.contract == "Auction":
        sql = (f"SELECT a.amount, a.reserve_price_per_unit, a.min_increment_per_unit, a.highest_bidder IS NOT NULL,"
               f" greatest(a.highest_price_per_unit, ({_BID_HELD})), a.status, a.end_time, a.seller,"
               " (SELECT max(timestamp) FROM indexed_block WHERE chain = a.chain) FROM auction a"
               " WHERE a.chain = %s AND a.auction_id = %s AND a.valid_to IS NULL")
    else:
        sql = (f"SELECT l.price_per_unit, l.amount_remaining - ({_HELD}), l.status, l.seller FROM listing l"
               " WHERE l.chain = %s AND l.listing_id = %s AND l.valid_to IS NULL")
    return cur.execute(sql, (chain, t.target_id)).fetchone()


def _lock_target(cur: Any, chain: str, t: Target) -> None:
    """Serialise the decisions on one listing until the caller's transaction ends, across oracle processes, so that
    what one accepts is counted by the next. (An escrow order needs none: a unique index admits one payment.)"""
    if t.contract in ("Marketplace", "Auction"):  # an auction: two fiat bids are weighed one after the other
        kind = "listing" if t.contract == "Marketplace" else "auction"
        cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                    (f"carbonledger:oracle:{kind}:{chain}:{t.target_id}",))


def check(claim: Claim, row: tuple, rates: dict[str, Any], hold_max_s: int = 2**62
          ) -> tuple[str | None, str | None, int | None]:
    """(flag, problem, price in wei) of a claim against the indexed target `row`; flag None = it pays for it.
    `hold_max_s`: the longest an auction may still run for a card hold to back a bid on it."""
    rate = rates.get(claim.currency)
    if rate is None:
        return "currency_mismatch", f"no oracle.fiat_rates entry for {claim.currency!r}", None
    if claim.expected_amount is not None and claim.amount != claim.expected_amount:
        return "amount_mismatch", f"paid {claim.amount}, the checkout asked for {claim.expected_amount}", None
    t = claim.target
    if t.contract == "Auction":
        lot, reserve, inc, has_bid, highest, status, end, seller, head = row
        minimum = int(highest) + int(inc) if has_bid or highest is not None else int(reserve)
        if len(t.buyer or "") != len(seller):
            return ("invalid_metadata", f"bidder {t.buyer} is not an account of this chain (its accounts are "
                    f"{(len(seller) - 2) // 2} bytes, like the seller's): release the hold", None)
        if status != "active" or (head is not None and int(head) >= int(end)):
            return "target_unavailable", f"the auction is {status if status != 'active' else 'over'}: release the hold", None
        if int(t.units or 0) < minimum:
            return "bid_too_low", f"bid {t.units} per credit, the auction needs at least {minimum}: release the hold", None
        if head is not None and int(end) - int(head) > hold_max_s:
            # A card authorisation lapses (about 7 days online); a hold that lapsed before the auction ends could
            # win and never be captured. (An anti-sniping extension adds minutes, inside the margin.)
            return ("hold_would_lapse", f"the auction ends in {(int(end) - int(head)) // 3600} h, later than a card "
                    f"hold lasts (oracle.fiat_bid_max_hold_s = {hold_max_s} s): release the hold", None)
        price = int(t.units or 0) * int(lot)
    elif t.contract == "Escrow":
        amount, status, ref = row
        if status == "cancelled":
            return "target_unavailable", "the order is cancelled", None
        if status != "created" and ref != claim.payment_ref:
            return "double_paid", f"the order is already {status} (paid another way): refund due", None
        price = int(amount)
    else:
        per_unit, remaining, status, seller = row
        if t.buyer is not None and len(t.buyer) != len(seller):  # an account of another family: never deliverable
            return ("invalid_metadata", f"buyer {t.buyer} is not an account of this chain (its accounts are "
                    f"{(len(seller) - 2) // 2} bytes, like the seller's): refund due", None)
        if status != "active" or int(remaining) < int(t.units or 0):
            return ("target_unavailable", f"the listing is {status} with {max(int(remaining), 0)} credits left that no"
                    " accepted payment holds", None)
        price = int(per_unit) * int(t.units or 0)
    if claim.amount * rate.wei_per_unit < price * 10**claim.decimals:
        return ("amount_mismatch", f"paid {claim.amount} (10^-{claim.decimals} {claim.currency}) is worth "
                f"{claim.amount * rate.wei_per_unit // 10**claim.decimals} wei; the price is {price} wei", price)
    return None, None, price


_PAYMENT_INSERT = ("INSERT INTO oracle_payment (provider, payment_id, payment_ref, chain, contract, target_id, amount,"
                   " currency, price_wei, units, event_id, status, flag, intent_key) VALUES (%s, %s, %s, %s, %s, %s, %s,"
                   " %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING")


def _payment(cur: Any, provider: str, column: str, value: str) -> tuple | None:
    return cur.execute(f"SELECT payment_id, payment_ref, status, flag, intent_key FROM oracle_payment"  # noqa: S608
                       f" WHERE provider = %s AND {column} = %s", (provider, value)).fetchone()


# An event's decision, usable alone or as one part of a larger statement (`{when}`: a condition over other parts).
_MARK = ("UPDATE oracle_provider_event SET status = %s, flag = %s, intent_key = %s,"
         " summary = CASE WHEN %s::text IS NULL THEN summary ELSE summary || jsonb_build_object('problem', %s::text) END"
         " WHERE provider = %s AND event_id = %s {when}")


def _mark_params(provider: str, event_id: str, out: Outcome) -> tuple[Any, ...]:
    return (out.status, out.flag, out.intent_key, out.problem, out.problem, provider, event_id)


# A decision in one statement, not three: the listing's lock is held over every round trip (py-spy at 100 payments/s on
# one listing: 264 of 375 decision samples waited for that lock, and on a busy 2-core box a round trip there took ~3 ms
# of wall time). The payment row goes in, then (only if it did) the intent and the event's mark; the answer: did the
# payment go in, and the new intent's status (NULL: none, or its key was taken already).
_IF_PAID = "EXISTS (SELECT 1 FROM p)"
_DECIDE_FLAGGED = (f"WITH p AS ({_PAYMENT_INSERT} RETURNING 1), e AS ({_MARK.format(when='AND ' + _IF_PAID)} RETURNING 1)"
                   f" SELECT {_IF_PAID}, NULL")
_DECIDE_ACCEPTED = (f"WITH p AS ({_PAYMENT_INSERT} RETURNING 1), i AS ({INTENT_INSERT.format(when='WHERE ' + _IF_PAID)}),"
                    f" e AS ({_MARK.format(when='AND ' + _IF_PAID)} RETURNING 1) SELECT {_IF_PAID}, (SELECT status FROM i)")


def _mark(cur: Any, provider: str, event_id: str, out: Outcome) -> Outcome:
    cur.execute(_MARK.format(when=""), _mark_params(provider, event_id, out))
    return out


def _decided(cur: Any, provider: str, event_id: str, claim: Claim, paid: tuple) -> Outcome:
    """The claim's payment was decided before: the same payment again gets the same decision; another reference
    for it (a second M-Pesa receipt for one checkout) is never written."""
    payment_id, ref, status, flag, key = paid
    if ref != claim.payment_ref:
        return _mark(cur, provider, event_id, Outcome(
            "flagged", "conflicting_receipt",
            problem=f"{claim.provider} payment {payment_id} was already decided with reference {ref}"))
    if status == "accepted":
        return _mark(cur, provider, event_id, Outcome("accepted", None, key, intent_status(cur, key), duplicate=True))
    return _mark(cur, provider, event_id, Outcome("flagged", flag, duplicate=True,
                                                  problem=f"this payment was already flagged {flag}"))


def evaluate(cur: Any, chain: str, provider: str, event_id: str, claim: Claim, settings: Any,
             expire: bool = False) -> Outcome:
    """Decide a recorded event's claim (see the module doc); `expire` flags it instead of leaving it pending."""
    paid = _payment(cur, claim.provider, "payment_id", claim.payment_id)
    if paid is not None:
        return _decided(cur, provider, event_id, claim, paid)
    _lock_target(cur, chain, claim.target)
    row = _indexed(cur, chain, claim.target)
    if row is None:
        if not expire:
            return Outcome("pending")
        flag, problem, price = "target_not_indexed", "the listing/order was never indexed", None
    else:
        flag, problem, price = check(claim, row, settings.fiat_rates, settings.fiat_bid_max_hold_s)
    t = claim.target
    cols = (claim.provider, claim.payment_id, claim.payment_ref, chain, t.contract, t.target_id, claim.amount,
            claim.currency, price, t.units, event_id)
    key = None if flag else claim.key
    out = Outcome("flagged", flag, problem=problem) if flag else Outcome("accepted", None, key)
    if flag:
        sql, params = _DECIDE_FLAGGED, (*cols, "flagged", flag, None, *_mark_params(provider, event_id, out))
    else:
        intent = intent_params(chain, t.intent(key, claim.provider, claim.payment_ref))
        sql = _DECIDE_ACCEPTED
        params = (*cols, "accepted", None, key, *intent, NOTIFY_CHANNEL, *_mark_params(provider, event_id, out))
    inserted, status = cur.execute(sql, params).fetchone()
    if inserted:
        if not flag and status is None:  # the intent's key was taken already: the intent there is this payment's
            status = intent_status(cur, key)
        return replace(out, intent_status=status)
    # Lost a race, or a unique index says no: the same payment (decided meanwhile), its reference used by
    # another payment, or the escrow order already holding an accepted payment.
    paid = _payment(cur, claim.provider, "payment_id", claim.payment_id)
    if paid is not None:
        return _decided(cur, provider, event_id, claim, paid)
    other = _payment(cur, claim.provider, "payment_ref", claim.payment_ref)
    if other is not None:
        flag, problem = "conflicting_receipt", f"reference {claim.payment_ref} already paid {other[0]}"
        return _mark(cur, provider, event_id, Outcome("flagged", flag, problem=problem))
    flag, problem = "double_paid", "the order already has an accepted off-chain payment: refund due"
    cur.execute(_PAYMENT_INSERT, (*cols, "flagged", flag, None))
    return _mark(cur, provider, event_id, Outcome("flagged", flag, problem=problem))


# ---- recording -------------------------------------------------------------------------------------------------
def settle_in(cur: Any, chain: str, event: Event, claim: Claim | None, settings: Any) -> Outcome:
    """Record `event` and decide its claim, inside the caller's transaction. A redelivered event gets its recorded
    outcome back (re-evaluated first while it is pending: the indexer may have caught up)."""
    if event.flag == "hold_captured" and cur.execute(
            "SELECT 1 FROM oracle_payment WHERE provider = %s AND payment_id = %s AND hold = 'captured'",
            (event.provider, event.payment_ref)).fetchone():
        # Our own capture of a winning bid's hold: Stripe now says `succeeded`. That is the bid paid, not a bid
        # sent as a payment: recorded, nothing to refund.
        event = Event(event.provider, event.event_id, event.type, {**event.summary, "problem": None}, event.payment_ref)
    if insert_event(cur, event, None, status="pending" if claim else None, claim=claim.to_json() if claim else None):
        if claim is None:
            status = "flagged" if event.flag else "recorded"
            return Outcome(status, event.flag, problem=event.summary.get("problem"))
        return evaluate(cur, chain, event.provider, event.event_id, claim, settings)
    row = cur.execute("SELECT status, flag, intent_key, claim FROM oracle_provider_event WHERE provider = %s"
                      " AND event_id = %s FOR UPDATE", (event.provider, event.event_id)).fetchone()
    status, flag, key, stored = row
    if status == "pending" and stored is not None:
        return evaluate(cur, chain, event.provider, event.event_id, Claim.from_json(stored), settings)
    return Outcome(status, flag, key, intent_status(cur, key), duplicate=True)


def settle(pool: Any, chain: str, event: Event, claim: Claim | None, settings: Any) -> Outcome:
    """`settle_in` in a transaction of its own, then `report` it."""
    with pool.connection() as conn, conn.transaction():
        out = settle_in(conn.cursor(), chain, event, claim, settings)
    report(event.provider, event.event_id, out)
    return out


def recheck_pending(pool: Any, chain: str, settings: Any) -> int:
    """Evaluate pending payments again (their listing/order may be indexed now); those pending longer than
    `payment_pending_max_age_s` are flagged `target_not_indexed`. Returns how many left 'pending'."""
    with pool.connection() as conn, conn.transaction():
        cur = conn.cursor()
        rows = cur.execute(
            "SELECT provider, event_id, claim, received_at < now() - make_interval(secs => %s) FROM oracle_provider_event"
            " WHERE status = 'pending' ORDER BY received_at LIMIT %s FOR UPDATE SKIP LOCKED",
            (settings.payment_pending_max_age_s, _RECHECK_BATCH)).fetchall()
        claims = sorted(((p, e, Claim.from_json(c), old) for p, e, c, old in rows),  # listing locks in one order:
                        key=lambda r: (r[2].target.contract, r[2].target.target_id))  # no deadlock between oracles
        done = [(p, e, evaluate(cur, chain, p, e, claim, settings, expire=old)) for p, e, claim, old in claims]
    for provider, event_id, out in done:
        if out.status != "pending":
            report(provider, event_id, out)
    return sum(out.status != "pending" for _, _, out in done)


# Escrow.Status values an order holds once funded (on chain with ETH, or by another recorded payment).
_ESCROW_PAID = {2: "Funded", 3: "Shipped", 4: "Delivered", 5: "Disputed", 6: "Resolved"}
_CURRENT = re.compile(r"^InvalidStatus\(.*\bcurrent=(\d+)\)$")


def _refused(contract: str, error: str | None) -> tuple[str, str]:
    """(flag, problem) of a payment whose write the chain refused with `error` (the decoded custom error)."""
    m = _CURRENT.match(error or "") if contract == "Escrow" else None
    if m is not None and int(m.group(1)) in _ESCROW_PAID:
        return "double_paid", (f"the order was {_ESCROW_PAID[int(m.group(1))].lower()} another way before the write "
                               f"({error}): refund due")
    return "write_failed", f"the chain refused the write ({error or 'no reason'}): refund due"


def writes_failed(cur: Any, intent_ids: list[int]) -> list[tuple[str, str, Outcome]]:
    """Inside the transaction that marks these intents failed: flag each accepted provider payment among them (its
    `oracle_payment` row, its provider events and its M-Pesa request) `double_paid` or `write_failed`, so that no
    payment taken is kept silently. Returns (provider, event id, outcome) to `report` once committed."""
    if not intent_ids:
        return []
    rows = cur.execute(
        "SELECT p.provider, p.payment_id, p.contract, p.intent_key, i.error FROM oracle_intent i JOIN oracle_payment p"
        " ON p.intent_key = i.idempotency_key WHERE i.id = ANY(%s) AND i.source IN ('stripe', 'mpesa')"
        " AND i.status = 'failed' AND p.status = 'accepted' FOR UPDATE OF p", (intent_ids,)).fetchall()
    reports = []
    for provider, payment_id, contract, key, error in rows:
        flag, problem = _refused(contract, error)
        cur.execute("UPDATE oracle_payment SET status = 'flagged', flag = %s WHERE provider = %s AND payment_id = %s",
                    (flag, provider, payment_id))
        if provider == "mpesa":
            cur.execute("UPDATE oracle_mpesa_request SET status = 'flagged', updated_at = now()"
                        " WHERE checkout_request_id = %s AND status = 'paid'", (payment_id,))
        events = cur.execute("SELECT provider, event_id FROM oracle_provider_event WHERE intent_key = %s"
                             " AND status = 'accepted' FOR UPDATE", (key,)).fetchall()
        out = Outcome("flagged", flag, key, "failed", problem=problem)
        reports += [(p, e, _mark(cur, p, e, out)) for p, e in events]
    return reports


def report(provider: str, event_id: str, out: Outcome) -> None:
    """The operator's log line for a decision worth a look: ids, flag and problem only (never names or phones)."""
    if out.status == "flagged" and not out.duplicate:
        log.warning("payment flagged for review, not written", extra={"provider": provider, "event": event_id,
                                                                      "flag": out.flag, "problem": out.problem})
    elif out.status == "pending" and not out.duplicate:
        log.info("payment waits for its listing/order to be indexed", extra={"provider": provider, "event": event_id})


def quote(pool: Any, chain: str, target: Target, amount: int, currency: str, decimals: int, settings: Any) -> None:
    """Refuse (4xx) asking a payer for an amount that would not pay for `target` (the M-Pesa STK push)."""
    claim = Claim("quote", "-", "-", target, amount, currency, decimals)
    with pool.connection() as conn:
        row = _indexed(conn.cursor(), chain, target)
        paid = target.contract == "Escrow" and conn.execute(
            "SELECT 1 FROM oracle_payment WHERE chain = %s AND target_id = %s AND contract = 'Escrow'"
            " AND status = 'accepted'", (chain, target.target_id)).fetchone()
    if paid:
        raise BadRequest(409, "double_paid", "the order already has an accepted off-chain payment")
    if row is None:
        raise BadRequest(409, "target_not_indexed", "the listing/order is not indexed yet: retry shortly")
    flag, problem, _ = check(claim, row, settings.fiat_rates, settings.fiat_bid_max_hold_s)
    if flag is not None:
        raise BadRequest(422 if flag in ("amount_mismatch", "currency_mismatch") else 409, flag, str(problem))


class PaymentCollector:
    """Scrape-time metric: provider events waiting for the indexer (pending) or for a human (flagged)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        g = GaugeMetricFamily("oracle_payment_events", "Provider events pending (target not indexed yet) or flagged"
                              " (not written; needs a human), by provider, status and flag",
                              labels=["provider", "status", "flag"])
        try:
            with self.pool.connection() as conn:
                rows = conn.execute("SELECT provider, status, coalesce(flag, ''), count(*) FROM oracle_provider_event"
                                    " WHERE status IN ('pending', 'flagged') GROUP BY 1, 2, 3").fetchall()
        except Exception:  # noqa: BLE001 - a scrape must not fail with the database
            rows = []
        for provider, status, flag, n in rows:
            g.add_metric([provider, status, flag], n)
        yield g
