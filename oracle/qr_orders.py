"""QR orders: a merchant binds an order hash to itself (and its payout address) before showing the QR code; only
that merchant may then have the order settled, only to that address, and only once the indexer has seen it paid.

Why the oracle checks payment although the contract does too (QRPayment refuses an unpaid hash): a refused write is
a failed intent, and the merchant would wait for nothing. A settlement refused on chain all the same (the
indexed payment was reorged away) does not brick the order: once it is paid again the next request queues a new
intent (`qr:<hash>:<n>`; the contract's `settled` flag still lets at most one of them through).
"""

from __future__ import annotations

from typing import Any

from oracle.ingress.common import BadRequest
from oracle.outbox import Event, Intent, insert_event, insert_intent


def _paid(cur: Any, chain: str, order_hash: str) -> bool:
    """An indexed QRPayment.Paid for the hash (pay() refuses zero and refuses a settled hash, so any row = paid)."""
    return cur.execute("SELECT EXISTS (SELECT 1 FROM qr_payment WHERE chain = %s AND order_hash = %s)",
                       (chain, order_hash)).fetchone()[0]


def create_order(pool: Any, chain: str, order_hash: str, merchant: str, payout: str) -> dict[str, Any]:
    """Bind `order_hash` to `merchant` and its payout address (idempotent for that merchant, 409 for another)."""
    with pool.connection() as conn, conn.transaction():
        cur = conn.cursor()
        row = cur.execute("SELECT merchant, payout_address FROM oracle_qr_order WHERE chain = %s AND order_hash = %s",
                          (chain, order_hash)).fetchone()
        if row is None:
            # A hash someone already paid into is public on chain: binding it now would let any merchant claim it.
            if _paid(cur, chain, order_hash):
                raise BadRequest(409, "already_paid", "this order hash is already paid; create orders before showing them")
            row = cur.execute("INSERT INTO oracle_qr_order (chain, order_hash, merchant, payout_address)"
                              " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING merchant, payout_address",
                              (chain, order_hash, merchant, payout)).fetchone()
            if row is not None:
                return {"order_hash": order_hash, "payout_address": payout, "duplicate": False}
            row = cur.execute("SELECT merchant, payout_address FROM oracle_qr_order WHERE chain = %s AND order_hash = %s",
                              (chain, order_hash)).fetchone()  # created concurrently
        if row[0] != merchant:
            raise BadRequest(409, "order_taken", "another merchant already created an order with this hash")
        return {"order_hash": order_hash, "payout_address": row[1], "duplicate": True}


def request_settlement(pool: Any, chain: str, order_hash: str, merchant: str, beneficiary: str | None) -> dict[str, Any]:
    """Queue `QRPayment.settleQROrder(payout, hash)` for the merchant's own paid order; the event and the intent are
    written in one transaction. A repeated request returns the queued intent."""
    with pool.connection() as conn, conn.transaction():
        cur = conn.cursor()
        row = cur.execute("SELECT merchant, payout_address, intent_key, settlements FROM oracle_qr_order"
                          " WHERE chain = %s AND order_hash = %s FOR UPDATE", (chain, order_hash)).fetchone()
        if row is None:
            raise BadRequest(404, "unknown_order", "no QR order with this hash (create it with POST /qr/orders)")
        owner, payout, key, count = row
        if owner != merchant:
            raise BadRequest(403, "forbidden", "this order belongs to another merchant")
        if beneficiary is not None and beneficiary.lower() != payout:
            raise BadRequest(403, "forbidden_beneficiary", "a QR order settles only to its merchant's payout address")
        if key is not None:
            status = cur.execute("SELECT status FROM oracle_intent WHERE idempotency_key = %s", (key,)).fetchone()[0]
            if status != "failed":
                return {"intent": key, "status": status}
        if not _paid(cur, chain, order_hash):
            raise BadRequest(409, "not_paid", "no indexed payment for this order yet; retry once it is paid")
        key = f"qr:{order_hash}" if count == 0 else f"qr:{order_hash}:{count + 1}"
        _, status, _ = insert_intent(cur, chain, Intent(key, "settlement", "QRPayment", "settleQROrder", [payout, order_hash]))
        insert_event(cur, Event(f"merchant:{merchant}", key.removeprefix("qr:"), "settlement", {"beneficiary": payout}), key)
        cur.execute("UPDATE oracle_qr_order SET intent_key = %s, settlements = settlements + 1 WHERE chain = %s"
                    " AND order_hash = %s", (key, chain, order_hash))
    return {"intent": key, "status": status}


def order_owner(pool: Any, chain: str, intent_key: str) -> str | None:
    """The merchant whose QR order a `qr:` intent settles."""
    order_hash = intent_key[3:69]
    with pool.connection() as conn:
        row = conn.execute("SELECT merchant FROM oracle_qr_order WHERE chain = %s AND order_hash = %s",
                           (chain, order_hash)).fetchone()
    return row[0] if row else None
