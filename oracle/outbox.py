"""The outbox: provider events and write intents, and the rule that they are written together.

Every ingress inserts its intent (`insert_intent`: unique idempotency key, NOTIFY to the sender) in the same
database transaction as the fact it derives from: the provider event (`insert_event`) and payment decision
(`oracle.payments.settle_in`), a settlement request (`oracle.qr_orders`), an approval or an IoT anchor
(`oracle.records`). A duplicate delivery finds the rows there and changes nothing. Only after that transaction has
committed may an endpoint answer 2xx.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg.types.json import Jsonb

NOTIFY_CHANNEL = "oracle_intent"

# Custom errors meaning "the chain already has this write": the intent is done, not failed.
ALREADY_DONE = ("PaymentRefUsed", "OrderAlreadySettled", "RootAlreadyAnchored", "VerificationAlreadyUsed", "AlreadySettled")

# The view that tells whether a write is already on chain: (contract, function) -> (view, index of its key arg).
# Asked before the gas estimate, because a contract may check something else first (Escrow checks the order's
# status before the payment reference, so a recorded payment would revert as InvalidStatus, not PaymentRefUsed).
DONE_VIEWS = {
    ("Marketplace", "settleOffchain"): ("paymentRefUsed", 3),
    ("Escrow", "recordOffchainPayment"): ("paymentRefUsed", 1),
    ("QRPayment", "settleQROrder"): ("settled", 1),
    ("IoTAnchor", "anchor"): ("anchoredAt", 0),
    ("Auction", "settle"): ("isSettled", 0),
    ("Auction", "bidOffchain"): ("paymentRefUsed", 3),
    ("CarbonCredit", "mint"): ("usedVerification", 3),
}


@dataclass(frozen=True)
class Intent:
    key: str
    source: str
    contract: str
    function: str
    args: Sequence[Any]


@dataclass(frozen=True)
class Event:
    provider: str
    event_id: str
    type: str
    summary: dict[str, Any] = field(default_factory=dict)
    payment_ref: str | None = None
    flag: str | None = None


# An intent's INSERT, usable alone or as one part of a larger statement: `{when}` may add a condition (a WHERE over
# other parts). The NOTIFY rides on it (pg_notify per inserted row, delivered at commit): no round trip of its own
# inside transactions that hold a lock (oracle.payments decides a listing's payments one at a time).
INTENT_INSERT = ("INSERT INTO oracle_intent (idempotency_key, source, chain, contract, function, args, status,"
                 " already_on_chain) SELECT %s, %s, %s, %s, %s, %s, 'pending', false {when}"
                 " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, status, pg_notify(%s, '')")


def intent_params(chain: str, intent: Intent) -> tuple[Any, ...]:
    """INTENT_INSERT's parameters for `intent`, up to its `{when}`; NOTIFY_CHANNEL follows those of `{when}`."""
    return (intent.key, intent.source, chain, intent.contract, intent.function, Jsonb(list(intent.args)))


def insert_intent(cur: Any, chain: str, intent: Intent) -> tuple[int, str, bool]:
    """(id, status, created). A duplicate key returns the existing row untouched."""
    row = cur.execute(INTENT_INSERT.format(when=""), (*intent_params(chain, intent), NOTIFY_CHANNEL)).fetchone()
    if row is not None:
        return row[0], row[1], True
    row = cur.execute("SELECT id, status FROM oracle_intent WHERE idempotency_key = %s", (intent.key,)).fetchone()
    return row[0], row[1], False


def intent_status(cur: Any, key: str | None) -> str | None:
    """The status of the intent with this idempotency key (None: no key, or no such intent)."""
    if key is None:
        return None
    row = cur.execute("SELECT status FROM oracle_intent WHERE idempotency_key = %s", (key,)).fetchone()
    return row[0] if row else None


def insert_event(cur: Any, event: Event, intent_key: str | None, status: str | None = None,
                 claim: dict[str, Any] | None = None) -> bool:
    """Insert the event (True) or find it there already (False). Status, unless given: flagged (it has a flag),
    accepted (it has an intent) or recorded (nothing to do)."""
    status = status or ("flagged" if event.flag else "accepted" if intent_key else "recorded")
    row = cur.execute(
        "INSERT INTO oracle_provider_event (provider, event_id, type, intent_key, payment_ref, flag, summary, status,"
        " claim) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
        (event.provider, event.event_id, event.type, intent_key, event.payment_ref, event.flag, Jsonb(event.summary),
         status, None if claim is None else Jsonb(claim)),
    ).fetchone()
    return row is not None


def intent_view(pool: Any, key: str) -> dict[str, Any] | None:
    """What GET /intents/{key} shows: status, tx hashes of every attempt, error. No payload data."""
    with pool.connection() as conn:
        row = conn.execute(
            "SELECT id, idempotency_key, source, chain, contract, function, status, nonce, tx_hash, block_number,"
            " error, already_on_chain, created_at, broadcast_at, confirmed_at FROM oracle_intent WHERE idempotency_key = %s",
            (key,),
        ).fetchone()
        if row is None:
            return None
        attempts = conn.execute(
            "SELECT nonce, tx_hash, max_fee, priority_fee, created_at, broadcast_at, broadcast_error FROM oracle_attempt"
            " WHERE intent_id = %s ORDER BY id", (row[0],),
        ).fetchall()
    ts = lambda v: v.isoformat() if v is not None else None  # noqa: E731
    return {
        "key": row[1], "source": row[2], "chain": row[3], "contract": row[4], "function": row[5], "status": row[6],
        "nonce": row[7], "tx_hash": row[8], "block_number": row[9], "error": row[10], "already_on_chain": row[11],
        "created_at": ts(row[12]), "broadcast_at": ts(row[13]), "confirmed_at": ts(row[14]),
        "attempts": [{"nonce": a[0], "tx_hash": a[1], "max_fee": str(a[2]), "priority_fee": str(a[3]),
                      "created_at": ts(a[4]), "broadcast_at": ts(a[5]), "broadcast_error": a[6]} for a in attempts],
    }


def status_counts(pool: Any) -> dict[str, int]:
    with pool.connection() as conn:
        return dict(conn.execute("SELECT status, count(*) FROM oracle_intent GROUP BY status").fetchall())
