"""QR orders: the oracle issues each order hash to the merchant that creates the order (before the QR code is shown)
and binds it to that merchant and its payout address; only that merchant may then have the order settled, only to
that address, and only once the indexer has seen it paid.

Why the oracle issues the hash: a hash a merchant could name could also be named first by another merchant (hashes
like keccak("shop-order-2") are predictable), and a payment to the QR code the first shows would then settle to the
second. An issued hash is keccak256(abi.encode(ORDER_TAG, merchant, nonce)) with 32 random bytes of nonce: nobody
can predict it, so nobody can bind it or pay into it before it is issued, and it is recomputable from the stored
(merchant, nonce) for an audit.

Why the oracle checks payment although the contract does too (QRPayment refuses an unpaid hash): a refused write is
a failed intent, and the merchant would wait for nothing. A settlement refused on chain all the same (the
indexed payment was reorged away) does not brick the order: once it is paid again the next request queues a new
intent (`qr:<hash>:<n>`; the contract's `settled` flag still lets at most one of them through).
"""

from __future__ import annotations

import secrets
from typing import Any

from eth_abi import encode
from eth_utils import keccak

from oracle.ingress.common import BadRequest
from oracle.outbox import Event, Intent, insert_event, insert_intent, intent_status

ORDER_TAG = "carbonledger:qr-order:v1"  # domain separation: no other hash of ours has this preimage shape


def order_hash(merchant: str, nonce: bytes) -> str:
    """keccak256(abi.encode(ORDER_TAG, merchant, nonce)) as 0x-hex: the hash an order of `merchant` is issued."""
    return "0x" + keccak(encode(["string", "string", "bytes32"], [ORDER_TAG, merchant, nonce])).hex()


def _paid(cur: Any, chain: str, order_hash: str) -> bool:
    """An indexed QRPayment.Paid for the hash (pay() refuses zero and refuses a settled hash, so any row = paid)."""
    return cur.execute("SELECT EXISTS (SELECT 1 FROM qr_payment WHERE chain = %s AND order_hash = %s)",
                       (chain, order_hash)).fetchone()[0]


def create_order(pool: Any, chain: str, merchant: str, payout: str) -> dict[str, Any]:
    """Issue a new order hash to `merchant` and bind it to the merchant and its payout address."""
    nonce = secrets.token_bytes(32)
    issued = order_hash(merchant, nonce)
    with pool.connection() as conn, conn.transaction():
        conn.execute("INSERT INTO oracle_qr_order (chain, order_hash, merchant, payout_address, nonce)"
                     " VALUES (%s, %s, %s, %s, %s)", (chain, issued, merchant, payout, "0x" + nonce.hex()))
    return {"order_hash": issued, "payout_address": payout}


def request_settlement(pool: Any, chain: str, order_hash: str, merchant: str, beneficiary: str | None) -> dict[str, Any]:
    """Queue `QRPayment.settleQROrder(payout, hash)` for the merchant's own paid order; the event and the intent are
    written in one transaction. A repeated request returns the queued intent."""
    with pool.connection() as conn, conn.transaction():
        cur = conn.cursor()
        row = cur.execute("SELECT merchant, payout_address, intent_key, settlements FROM oracle_qr_order"
                          " WHERE chain = %s AND order_hash = %s FOR UPDATE", (chain, order_hash)).fetchone()
        if row is None:
            raise BadRequest(404, "unknown_order", "no QR order with this hash (POST /qr/orders issues one)")
        owner, payout, key, count = row
        if owner != merchant:
            raise BadRequest(403, "forbidden", "this order belongs to another merchant")
        if beneficiary is not None and beneficiary.lower() != payout:
            raise BadRequest(403, "forbidden_beneficiary", "a QR order settles only to its merchant's payout address")
        if key is not None:
            status = intent_status(cur, key)
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
