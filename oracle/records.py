"""Transactions behind the endpoints other than Stripe's: IoT readings and anchors, verifications, M-Pesa requests,
and who an intent belongs to.

Each function is one database transaction; an intent is always inserted in the same transaction as the fact it
comes from (outbox rule).
"""

from __future__ import annotations

import uuid

from typing import Any

import orjson
from psycopg.types.json import Jsonb

from chains.merkle import build_tree
from oracle.ingress.common import BadRequest
from oracle.ingress.iot import METRICS, Reading, assess
from oracle.outbox import Intent, insert_intent

RECENT = 20


def store_reading(pool: Any, r: Reading) -> dict[str, Any]:
    """Insert a reading (idempotent on (device, ts)); the same ts with other content is a 409."""
    with pool.connection() as conn, conn.transaction():
        cur = conn.cursor()
        cur.execute("INSERT INTO oracle_iot_device (device_id, readings) VALUES (%s, 0) ON CONFLICT DO NOTHING", (r.device_id,))
        cur.execute("SELECT 1 FROM oracle_iot_device WHERE device_id = %s FOR UPDATE", (r.device_id,))  # serialise per device
        old = cur.execute("SELECT id, canonical, leaf, flags, quality FROM oracle_iot_reading WHERE device_id = %s AND ts = %s",
                          (r.device_id, r.ts)).fetchone()
        if old is not None:
            if old[1] != r.canonical:
                raise BadRequest(409, "conflicting_reading", "this device already sent a different reading for this ts")
            return {"id": old[0], "leaf": old[2], "flags": old[3], "quality": old[4], "duplicate": True}
        recent: dict[str, list[float]] = {m: [] for m in METRICS}
        for (canon,) in cur.execute("SELECT canonical FROM oracle_iot_reading WHERE device_id = %s ORDER BY ts DESC LIMIT %s",
                                    (r.device_id, RECENT)):
            for k, v in orjson.loads(canon).get("metrics", {}).items():
                recent.setdefault(k, []).append(v)
        flags, quality = assess(r, recent)
        leaf = "0x" + r.leaf.hex()
        rid = cur.execute(
            "INSERT INTO oracle_iot_reading (device_id, ts, canonical, leaf, flags, quality) VALUES (%s, %s, %s, %s, %s, %s)"
            " RETURNING id", (r.device_id, r.ts, r.canonical, leaf, Jsonb(flags), quality)).fetchone()[0]
        cur.execute("UPDATE oracle_iot_device SET readings = readings + 1, last_ts = GREATEST(coalesce(last_ts, 0), %s)"
                    " WHERE device_id = %s", (r.ts, r.device_id))
    return {"id": rid, "leaf": leaf, "flags": flags, "quality": quality, "duplicate": False}


def anchor_pending(pool: Any, chain: str, max_leaves: int) -> str | None:
    """Build one Merkle tree over unanchored readings, store each proof, and queue `IoTAnchor.anchor`."""
    with pool.connection() as conn, conn.transaction():
        cur = conn.cursor()
        rows = cur.execute("SELECT id, leaf, ts, quality FROM oracle_iot_reading WHERE anchor_id IS NULL ORDER BY id"
                           " LIMIT %s FOR UPDATE SKIP LOCKED", (max_leaves,)).fetchall()
        if not rows:
            return None
        tree = build_tree([bytes.fromhex(r[1][2:]) for r in rows])
        root = "0x" + tree.root.hex()
        start, end = min(r[2] for r in rows), max(r[2] for r in rows)
        quality = sum(r[3] for r in rows) // len(rows)
        key = f"iot:{root}"
        aid = cur.execute("INSERT INTO oracle_iot_anchor (root, leaf_count, window_start, window_end, quality_score, intent_key)"
                          " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                          (root, len(rows), start, end, quality, key)).fetchone()[0]
        cur.executemany("UPDATE oracle_iot_reading SET anchor_id = %s, proof = %s WHERE id = %s",
                        [(aid, Jsonb(["0x" + p.hex() for p in tree.proof(i)]), r[0]) for i, r in enumerate(rows)])
        insert_intent(cur, chain, Intent(key, "iot", "IoTAnchor", "anchor", [root, len(rows), start, end, quality]))
    return key


def reading_proof(pool: Any, reading_id: int) -> dict[str, Any] | None:
    with pool.connection() as conn:
        row = conn.execute(
            "SELECT r.device_id, r.ts, r.canonical, r.leaf, r.flags, r.quality, r.proof, a.root, a.intent_key, i.status,"
            " i.tx_hash FROM oracle_iot_reading r LEFT JOIN oracle_iot_anchor a ON a.id = r.anchor_id"
            " LEFT JOIN oracle_intent i ON i.idempotency_key = a.intent_key WHERE r.id = %s", (reading_id,)).fetchone()
    if row is None:
        return None
    keys = ("device_id", "ts", "canonical", "leaf", "flags", "quality", "proof", "root", "intent_key", "anchor_status",
            "anchor_tx")
    return dict(zip(keys, row))


def create_verification(pool: Any, vid: str, recipient: str, batch_id: int, amount: int, canonical: str, vhash: str,
                        by: str) -> dict[str, Any]:
    with pool.connection() as conn, conn.transaction():
        cur = conn.cursor()
        row = cur.execute(
            "INSERT INTO oracle_verification (id, recipient, batch_id, amount, verification_hash, canonical, status,"
            " requested_by) VALUES (%s, %s, %s, %s, %s, %s, 'requested', %s) ON CONFLICT DO NOTHING RETURNING status",
            (vid, recipient, str(batch_id), str(amount), vhash, canonical, by)).fetchone()
        if row is None:
            old = cur.execute("SELECT canonical, status FROM oracle_verification WHERE id = %s", (vid,)).fetchone()
            if old is None or old[0] != canonical:
                raise BadRequest(409, "conflicting_verification", "a different request already has this id or hash")
            return {"id": vid, "verification_hash": vhash, "status": old[1], "duplicate": True}
    return {"id": vid, "verification_hash": vhash, "status": "requested", "duplicate": False}


def approve_verification(pool: Any, chain: str, vid: str, by: str, max_amount: int, max_daily: int) -> dict[str, Any]:
    """Approve a request as verifier `by` and queue its mint, in one transaction. Four eyes: the requester never
    approves (also a table constraint). Caps: `max_amount` per approval and `max_daily` per verifier in any 24
    hours, summed under the verifier's row lock so that racing approvals cannot both fit under the cap."""
    with pool.connection() as conn, conn.transaction():
        cur = conn.cursor()
        row = cur.execute("SELECT recipient, batch_id, amount, verification_hash, status, intent_key, requested_by"
                          " FROM oracle_verification WHERE id = %s FOR UPDATE", (vid,)).fetchone()
        if row is None:
            raise BadRequest(404, "not_found", "no such verification request")
        recipient, batch_id, amount, vhash, status, key, requested_by = row
        if requested_by == by:
            raise BadRequest(403, "four_eyes", "a verifier cannot approve its own request")
        key = key or f"mint:{vhash}"
        mint = Intent(key, "verification", "CarbonCredit", "mint", [recipient, batch_id, amount, vhash])
        if status == "approved":  # a repeated approval: the queued mint, unchanged
            insert_intent(cur, chain, mint)
            return {"id": vid, "status": "approved", "intent_key": key}
        if int(amount) > max_amount:
            raise BadRequest(403, "approval_cap_exceeded", f"one approval may mint at most {max_amount}")
        cur.execute("INSERT INTO oracle_verifier (name) VALUES (%s) ON CONFLICT DO NOTHING", (by,))
        cur.execute("SELECT 1 FROM oracle_verifier WHERE name = %s FOR UPDATE", (by,))  # serialise this verifier
        day = cur.execute("SELECT coalesce(sum(amount::numeric), 0) FROM oracle_verification WHERE approved_by = %s"
                          " AND approved_at > now() - interval '1 day'", (by,)).fetchone()[0]
        if int(day) + int(amount) > max_daily:
            raise BadRequest(403, "daily_cap_exceeded", f"this verifier may approve at most {max_daily} in 24 hours")
        cur.execute("UPDATE oracle_verification SET status = 'approved', approved_by = %s, approved_at = now(),"
                    " intent_key = %s WHERE id = %s", (by, key, vid))
        cur.execute("UPDATE oracle_verifier SET approvals = approvals + 1, last_approved_at = now() WHERE name = %s", (by,))
        insert_intent(cur, chain, mint)
    return {"id": vid, "status": "approved", "intent_key": key}


def intent_owners(pool: Any, chain: str, key: str) -> set[str]:
    """Who an intent is for, as `merchant:<name>` / `verifier:<name>`: the merchant of a QR order or of an STK push,
    the requester and the approver of a mint. Stripe and IoT intents belong to no credential (operators only)."""
    from oracle.qr_orders import order_owner

    if key.startswith("qr:"):
        owner = order_owner(pool, chain, key)
        return {f"merchant:{owner}"} if owner else set()
    with pool.connection() as conn:
        if key.startswith("mint:"):
            row = conn.execute("SELECT requested_by, approved_by FROM oracle_verification WHERE verification_hash = %s",
                               (key[5:],)).fetchone()
            return {f"verifier:{n}" for n in row or () if n}
        if key.startswith("mpesa:"):  # the receipt is the payment reference of the callback's event
            rows = conn.execute("SELECT r.merchant FROM oracle_provider_event e JOIN oracle_mpesa_request r"
                                " ON r.checkout_request_id = split_part(e.event_id, ':', 1)"  # event id: checkout:receipt
                                " WHERE e.provider = 'mpesa' AND e.payment_ref = %s"
                                " AND e.intent_key = %s AND r.merchant IS NOT NULL", (key[6:], key)).fetchall()
            return {f"merchant:{m}" for (m,) in rows}
    return set()


def mpesa_request(pool: Any, checkout_id: str) -> dict[str, Any] | None:
    with pool.connection() as conn:
        row = conn.execute("SELECT amount, target, status FROM oracle_mpesa_request WHERE checkout_request_id = %s",
                           (checkout_id,)).fetchone()
    return None if row is None else {"amount": row[0], "target": row[1], "status": row[2]}


def find_mpesa_request(pool: Any, checkout_id: str, adopt_amount: int | None, window_s: int
                       ) -> tuple[dict[str, Any] | None, int]:
    """(the request of this CheckoutRequestID or None, how many pushes of `adopt_amount` KES went out in the window
    without their CheckoutRequestID being saved). One statement, one snapshot: a concurrent adoption is seen either
    as the adopted request or as the push still to adopt, never as neither."""
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT checkout_request_id = %s, amount, target, status FROM oracle_mpesa_request"
            " WHERE checkout_request_id = %s OR (%s::bigint IS NOT NULL AND status = 'initiating' AND amount = %s"
            " AND created_at > now() - make_interval(secs => %s))",
            (checkout_id, checkout_id, adopt_amount, adopt_amount, window_s)).fetchall()
    mine = next(({"amount": a, "target": t, "status": s} for m, a, t, s in rows if m), None)
    return mine, sum(not m for m, *_ in rows)


def begin_mpesa_request(pool: Any, amount: int, target: dict[str, Any], merchant: str | None = None) -> str:
    """Record an STK push *before* Daraja is asked for it (status 'initiating', a provisional id), so that a push
    that goes out is never unknown to us, whatever fails afterwards."""
    provisional = f"init:{uuid.uuid4().hex}"
    with pool.connection() as conn, conn.transaction():
        conn.execute("INSERT INTO oracle_mpesa_request (checkout_request_id, amount, target, status, merchant)"
                     " VALUES (%s, %s, %s, 'initiating', %s)", (provisional, amount, Jsonb(target), merchant))
    return provisional


def link_mpesa_request(pool: Any, provisional: str, merchant_id: str, checkout_id: str) -> None:
    """Daraja accepted the push: the request takes its CheckoutRequestID."""
    with pool.connection() as conn, conn.transaction():
        conn.execute("UPDATE oracle_mpesa_request SET checkout_request_id = %s, merchant_request_id = %s,"
                     " status = 'pending', updated_at = now() WHERE checkout_request_id = %s AND status = 'initiating'",
                     (checkout_id, merchant_id, provisional))


def refuse_mpesa_request(pool: Any, provisional: str) -> None:
    """Daraja refused the push: nothing was sent."""
    with pool.connection() as conn, conn.transaction():
        conn.execute("UPDATE oracle_mpesa_request SET status = 'refused', updated_at = now()"
                     " WHERE checkout_request_id = %s AND status = 'initiating'", (provisional,))


def save_mpesa_request(pool: Any, merchant_id: str, checkout_id: str, amount: int, target: dict[str, Any]) -> None:
    """A push Daraja accepted, recorded in one go (begin + link; for tools and tests)."""
    link_mpesa_request(pool, begin_mpesa_request(pool, amount, target), merchant_id, checkout_id)


def adopt_mpesa_request(pool: Any, checkout_id: str, merchant_id: str, amount: int, window_s: int) -> dict[str, Any] | None:
    """A callback Daraja confirmed for a push whose link was lost: if exactly one unlinked push of this amount went
    out in the window, it is that one (linked now, and returned); otherwise None (ambiguous: a human decides)."""
    with pool.connection() as conn, conn.transaction():
        rows = conn.execute("SELECT checkout_request_id FROM oracle_mpesa_request WHERE status = 'initiating'"
                            " AND amount = %s AND created_at > now() - make_interval(secs => %s) FOR UPDATE",
                            (amount, window_s)).fetchall()
        # Read after the lock: a concurrent delivery of this same callback may have adopted the push while this one
        # waited. Then it is this checkout's request (the payment gate settles it once), not an unmatched payment.
        adopted = conn.execute("SELECT 1 FROM oracle_mpesa_request WHERE checkout_request_id = %s",
                               (checkout_id,)).fetchone()
        if adopted is None:
            if len(rows) != 1:
                return None
            conn.execute("UPDATE oracle_mpesa_request SET checkout_request_id = %s, merchant_request_id = %s,"
                         " status = 'pending', updated_at = now() WHERE checkout_request_id = %s",
                         (checkout_id, merchant_id, rows[0][0]))
    return mpesa_request(pool, checkout_id)


def settle_mpesa(pool: Any, chain: str, event: Any, claim: Any, status: str, cb: Any, settings: Any) -> Any:
    """A confirmed callback: its event, the payment decision (oracle.payments: at most one write per checkout) and
    the request's status, in one transaction. A paid request keeps 'paid' whatever arrives after."""
    from oracle import payments

    with pool.connection() as conn, conn.transaction():
        cur = conn.cursor()
        out = payments.settle_in(cur, chain, event, claim, settings)
        if status == "paid" and out.status == "flagged":
            status = "flagged"
        cur.execute("UPDATE oracle_mpesa_request SET status = %s, result_code = %s, receipt = %s, updated_at = now()"
                    " WHERE checkout_request_id = %s AND status NOT IN ('paid', 'flagged')",
                    (status, cb.result_code, cb.receipt, cb.checkout_request_id))
    payments.report(event.provider, event.event_id, out)
    return out
