"""Authorised, not just authenticated (DESIGN.md invariant 8) on a real Postgres + anvil: a merchant settles only
its own QR orders, only to its own payout address, only once they are paid; a verifier never approves its own
request and stays within its caps, even when approvals race; intent details go only to whoever the intent is for."""

from __future__ import annotations

import pytest
from eth_utils import keccak

from oracle.testing import count_events
from tests.integration.oracle_rig import Rig
from tests.integration.oracle_fixtures import _no_key_in_logs, anyio_backend, localstripe  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.anvil, pytest.mark.anyio]

SHOP_PAYOUT = "0x00000000000000000000000000000000005a1e01"
KIOSK_PAYOUT = "0x00000000000000000000000000000000005a1e02"
SHOP, KIOSK = {"authorization": "Bearer tok-shop"}, {"authorization": "Bearer tok-kiosk"}
VERA, OTTO, IDA = ({"authorization": f"Bearer tok-{n}"} for n in ("vera", "otto", "ida"))
OPS = {"authorization": "Bearer tok-ops"}
SETTINGS = {
    "merchant_tokens": {"shop": "tok-shop", "kiosk": "tok-kiosk"},
    "merchant_payout_addresses": {"shop": SHOP_PAYOUT, "kiosk": KIOSK_PAYOUT},
    "verifier_tokens": {"vera": "tok-vera", "otto": "tok-otto", "ida": "tok-ida"},
    "operator_tokens": {"ops": "tok-ops"},
    "verifier_max_approval_amount": 1000, "verifier_max_daily_amount": 1500,
}
ETH = 10**18


@pytest.fixture()
def rig(db_url, anvil, localstripe):
    r = Rig(db_url, anvil, stripe=localstripe, **SETTINGS)
    yield r
    r.close()


def intents(rig) -> list[str]:
    with rig.pool.connection() as c:
        return [k for (k,) in c.execute("SELECT idempotency_key FROM oracle_intent ORDER BY id")]


def pay(rig, order_hash: str, value: int = ETH) -> None:
    w = rig.world
    tx = w.contract("QRPayment").functions.pay(order_hash).transact({"from": w.w3.eth.accounts[3], "value": value})
    assert w.w3.eth.wait_for_transaction_receipt(tx)["status"] == 1


async def new_order(rig, auth: dict) -> str:
    """A QR order created by the merchant of `auth`: the hash the oracle issued for it."""
    r = await rig.client.post("/qr/orders", json={}, headers=auth)
    assert r.status_code == 201, r.text
    return r.json()["order_hash"]


async def test_qr_orders_are_settled_by_their_merchant_to_its_payout_address_once_paid(rig):
    w = rig.world
    r = await rig.client.post("/qr/orders", json={}, headers=SHOP)
    assert r.status_code == 201 and r.json()["payout_address"] == SHOP_PAYOUT, r.text
    h = r.json()["order_hash"]
    # not paid yet: refused before anything is written (settling it would brick the hash on chain)
    r = await rig.client.post("/settlements", json={"order_hash": h}, headers=SHOP)
    assert (r.status_code, r.json()["error"]) == (409, "not_paid"), r.text
    pay(rig, h)
    r = await rig.client.post("/settlements", json={"order_hash": h}, headers=SHOP)
    assert (r.status_code, r.json()["error"]) == (409, "not_paid")  # paid on chain, not indexed yet
    rig.index()
    # the attack: another merchant settles the paid order to itself, or the owner to some other address
    for body, auth in (({"beneficiary": KIOSK_PAYOUT, "order_hash": h}, KIOSK), ({"order_hash": h}, KIOSK),
                       ({"beneficiary": KIOSK_PAYOUT, "order_hash": h}, SHOP)):
        r = await rig.client.post("/settlements", json=body, headers=auth)
        assert r.status_code == 403, (body, r.text)
    unknown = "0x" + keccak(text="nobody's order").hex()
    pay(rig, unknown)
    rig.index()
    assert (await rig.client.post("/settlements", json={"order_hash": unknown}, headers=SHOP)).status_code == 404
    assert intents(rig) == []
    for body in ({"order_hash": h}, {"order_hash": h.upper().replace("0X", "0x"), "beneficiary": SHOP_PAYOUT}):
        r = await rig.client.post("/settlements", json=body, headers=SHOP)
        assert r.status_code == 202 and r.json()["intent"] == f"qr:{h}", r.text
    before = w.w3.eth.get_balance(w3_address(SHOP_PAYOUT))
    rig.drain()
    assert rig.status(f"qr:{h}") == "confirmed"
    settled = count_events(w.w3, w.contract("QRPayment"), "Settled")
    assert [(s["beneficiary"].lower(), s["amount"]) for s in settled] == [(SHOP_PAYOUT, ETH)]
    assert w.w3.eth.get_balance(w3_address(SHOP_PAYOUT)) - before == ETH
    # a merchant without a payout address cannot bind orders
    rig.app.s = rig.app.s.model_copy(update={"merchant_payout_addresses": {"shop": SHOP_PAYOUT}})
    r = await rig.client.post("/qr/orders", json={}, headers=KIOSK)
    assert (r.status_code, r.json()["error"]) == (403, "no_payout_address")


async def test_order_hashes_are_issued_by_the_oracle_and_cannot_be_squatted(rig):
    """A merchant used to name its order hash, so another could register it first (hashes like
    keccak("shop-order-2") are predictable) and a payment to the QR code shown by the first would settle to the
    second. Now the oracle issues every hash: keccak(abi.encode("carbonledger:qr-order:v1", merchant, random
    32-byte nonce)), unpredictable and bound to the merchant that asked. Nobody can name a hash, so none can be
    squatted, and no other merchant can settle an issued one; a paid hash the oracle never issued is nobody's."""
    from eth_abi import encode

    a, b = await new_order(rig, SHOP), await new_order(rig, SHOP)
    assert a != b and len(a) == 66
    with rig.pool.connection() as c:
        merchant, nonce = c.execute("SELECT merchant, nonce FROM oracle_qr_order WHERE order_hash = %s", (a,)).fetchone()
    assert merchant == "shop"
    assert "0x" + keccak(encode(["string", "string", "bytes32"], ["carbonledger:qr-order:v1", "shop",
                                                                   bytes.fromhex(nonce[2:])])).hex() == a
    squat = "0x" + keccak(text="shop-order-3").hex()  # the shop's next hash under the old scheme
    for body in ({"order_hash": a}, {"order_hash": squat}, {"reference": 7}, []):
        r = await rig.client.post("/qr/orders", json=body, headers=KIOSK)
        assert r.status_code in (400, 422) and r.json()["error"] in ("invalid_field", "malformed_json"), (body, r.text)
    pay(rig, a)
    pay(rig, squat)  # paid before anyone could create it: payments are public, it stays nobody's
    rig.index()
    r = await rig.client.post("/settlements", json={"order_hash": a}, headers=KIOSK)
    assert (r.status_code, r.json()["error"]) == (403, "forbidden"), r.text
    r = await rig.client.post("/settlements", json={"order_hash": a, "beneficiary": KIOSK_PAYOUT}, headers=KIOSK)
    assert r.status_code == 403, r.text
    for auth in (SHOP, KIOSK):
        r = await rig.client.post("/settlements", json={"order_hash": squat}, headers=auth)
        assert (r.status_code, r.json()["error"]) == (404, "unknown_order"), r.text
    assert intents(rig) == []
    r = await rig.client.post("/settlements", json={"order_hash": a}, headers=SHOP)
    assert r.status_code == 202 and r.json()["intent"] == f"qr:{a}", r.text


async def test_a_failed_settlement_does_not_brick_the_order(rig):
    """If the chain refuses a settlement (the indexed payment was reorged away), the order is not stuck: once it
    is paid again, the merchant's next request queues a fresh write."""
    w = rig.world
    h = await new_order(rig, SHOP)
    snap = rig.anvil.rpc("evm_snapshot")
    pay(rig, h)
    rig.index()
    r = await rig.client.post("/settlements", json={"order_hash": h}, headers=SHOP)
    assert r.status_code == 202
    first = r.json()["intent"]
    rig.anvil.rpc("evm_revert", [snap])  # the payment is gone before the settlement is sent
    rig.anvil.rpc("anvil_mine", ["0x3"])
    rig.drain()
    assert rig.status(first) == "failed"
    assert (await rig.client.get(f"/intents/{first}", headers=SHOP)).json()["error"].startswith("OrderNotPaid(")
    assert not w.contract("QRPayment").functions.settled(h).call()
    rig.index()
    assert (await rig.client.post("/settlements", json={"order_hash": h}, headers=SHOP)).status_code == 409
    pay(rig, h)
    rig.index()
    r = await rig.client.post("/settlements", json={"order_hash": h}, headers=SHOP)
    assert r.status_code == 202 and r.json()["intent"] != first
    rig.drain()
    assert rig.status(r.json()["intent"]) == "confirmed"
    assert [s["beneficiary"].lower() for s in count_events(w.w3, w.contract("QRPayment"), "Settled")] == [SHOP_PAYOUT]


def _request(rig, vid: str, amount: int) -> dict:
    return {"id": vid, "recipient": rig.world.w3.eth.accounts[5], "batch_id": rig.world.batch_id, "amount": str(amount),
            "evidence": {"report": f"ipfs://{vid}"}}


async def test_four_eyes_and_approval_caps(rig):
    assert (await rig.client.post("/verifications", json=_request(rig, "v-1", 250), headers=VERA)).status_code == 201
    # the requester cannot approve its own request (the old behaviour: 202 and a mint)
    r = await rig.client.post("/verifications/v-1/approve", headers=VERA)
    assert (r.status_code, r.json()["error"]) == (403, "four_eyes"), r.text
    assert intents(rig) == []
    r = await rig.client.post("/verifications/v-1/approve", headers=OTTO)
    assert r.status_code == 202, r.text
    key = r.json()["intent_key"]
    assert (await rig.client.post("/verifications/v-1/approve", headers=OTTO)).json()["intent_key"] == key
    assert (await rig.client.post("/verifications/v-1/approve", headers=VERA)).status_code == 403
    with rig.pool.connection() as c:
        row = c.execute("SELECT requested_by, approved_by, approved_at IS NOT NULL FROM oracle_verification"
                        " WHERE id = 'v-1'").fetchone()
    assert row == ("vera", "otto", True)
    # per-approval cap (1000), then otto's daily cap (1500: 250 + 1000 fit, 300 more do not); ida has her own
    assert (await rig.client.post("/verifications", json=_request(rig, "v-big", 1001), headers=VERA)).status_code == 201
    r = await rig.client.post("/verifications/v-big/approve", headers=OTTO)
    assert (r.status_code, r.json()["error"]) == (403, "approval_cap_exceeded")
    for vid, amount in (("v-2", 1000), ("v-3", 300)):
        assert (await rig.client.post("/verifications", json=_request(rig, vid, amount), headers=VERA)).status_code == 201
    assert (await rig.client.post("/verifications/v-2/approve", headers=OTTO)).status_code == 202
    r = await rig.client.post("/verifications/v-3/approve", headers=OTTO)
    assert (r.status_code, r.json()["error"]) == (403, "daily_cap_exceeded")
    assert (await rig.client.post("/verifications/v-3/approve", headers=IDA)).status_code == 202
    rig.drain()
    minted = count_events(rig.world.w3, rig.world.contract("CarbonCredit"), "Minted")
    assert sorted(m["amount"] for m in minted if m["to"] == rig.world.w3.eth.accounts[5]) == [250, 300, 1000]
    # auditors see who requested and who approved each mint, and when, in the batch's chain of custody
    rig.index()
    events = await _api(rig, "query($b: BigInt) { provenance(batchId: $b) { events { kind amount requestedBy approvedBy"
                             " approvedAt } } }", {"b": str(rig.world.batch_id)})
    mints = sorted((int(e["amount"]), e["requestedBy"], e["approvedBy"]) for e in events["provenance"]["events"]
                   if e["kind"] == "MINT" and e["requestedBy"])
    assert mints == [(250, "vera", "otto"), (300, "vera", "ida"), (1000, "vera", "otto")]
    assert all(isinstance(e["approvedAt"], int) and e["approvedAt"] > 1.7e9 for e in events["provenance"]["events"]
               if e["requestedBy"])


async def _api(rig, query: str, variables: dict) -> dict:
    """The GraphQL API in process on the rig's database."""
    import httpx

    from core.config import Settings
    from gqlapi.app import create_app

    app = create_app(Settings(database={"url": rig.db_url}), rig.db_url, pool_size=2)
    await app.state.db.open()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as api:
            r = await api.post("/graphql", json={"query": query, "variables": variables})
    finally:
        await app.state.db.close()
    assert r.status_code == 200 and "errors" not in r.json(), r.text
    return r.json()["data"]


async def test_concurrent_approvals_never_exceed_the_daily_cap(rig):
    """Two approvals by one verifier race; each fits the cap alone, together they do not: exactly one wins. The test
    holds the verifier's row until both approvals wait for it (pg_locks shows two waiters on oracle_verifier), so
    they provably overlap. With the approval's lock on that row, taken before the day's total is read, the second
    reads the first's approval and is refused; without it both read the total first and both pass (this test fails)."""
    import time

    import anyio

    for vid in ("race-a", "race-b"):
        assert (await rig.client.post("/verifications", json=_request(rig, vid, 800), headers=VERA)).status_code == 201
    with rig.pool.connection() as c:
        c.execute("INSERT INTO oracle_verifier (name) VALUES ('otto')")
    results = {}

    async def approve(vid: str) -> None:  # each request's database work runs in its own worker thread
        results[vid] = (await rig.client.post(f"/verifications/{vid}/approve", headers=OTTO)).status_code

    def waiting() -> int:
        with rig.pool.connection() as c:
            return c.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                             " AND cardinality(pg_blocking_pids(pid)) > 0 AND query LIKE '%oracle_verifier%'"
                             ).fetchone()[0]

    with rig.pool.connection() as gate:
        gate.execute("SELECT 1 FROM oracle_verifier WHERE name = 'otto' FOR UPDATE")
        async with anyio.create_task_group() as tg:
            for vid in ("race-a", "race-b"):
                tg.start_soon(approve, vid)
            deadline = time.monotonic() + 60
            try:
                while waiting() < 2:
                    assert time.monotonic() < deadline, "the approvals never met at the verifier's lock"
                    await anyio.sleep(0.02)
            finally:
                gate.commit()  # also when the wait failed: the approvals wait on the gate
    assert sorted(results.values()) == [202, 403], results
    assert len(intents(rig)) == 1


async def test_intent_details_go_to_their_owner_status_to_anyone(rig):
    h = await new_order(rig, SHOP)
    pay(rig, h)
    rig.index()
    key = (await rig.client.post("/settlements", json={"order_hash": h}, headers=SHOP)).json()["intent"]
    assert (await rig.client.post("/verifications", json=_request(rig, "v-i", 5), headers=VERA)).status_code == 201
    mint = (await rig.client.post("/verifications/v-i/approve", headers=OTTO)).json()["intent_key"]
    w = rig.world
    _, r = await rig.pay({"order_id": str(w.order_ids[0])})
    stripe = r.json()["intent"]
    rig.drain()
    for k in (key, mint, stripe):  # anyone: the status, nothing else (no tx hash, no error, no attempts)
        r = await rig.client.get(f"/intents/{k}")
        assert r.status_code == 200 and r.json() == {"key": k, "status": "confirmed"}, r.text
    full = {key: (SHOP, OPS), mint: (VERA, OTTO, OPS), stripe: (OPS,)}
    denied = {key: (KIOSK, VERA), mint: (IDA, SHOP), stripe: (SHOP, VERA)}
    for k, creds in full.items():
        for auth in creds:
            r = await rig.client.get(f"/intents/{k}", headers=auth)
            assert r.status_code == 200 and r.json()["tx_hash"] and "attempts" in r.json(), (k, auth)
        for auth in denied[k]:
            assert (await rig.client.get(f"/intents/{k}", headers=auth)).status_code == 403, (k, auth)
        r = await rig.client.get(f"/intents/{k}", headers={"authorization": "Bearer wrong"})
        assert r.status_code == 401
    assert (await rig.client.get("/intents/qr:nope")).status_code == 404


async def test_an_mpesa_payment_intent_is_its_merchants(db_url, anvil, fixtures_dir):
    """The merchant that pushed the STK request reads its payment's intent in full; another merchant may not."""
    import json

    from oracle.testing import FakeDaraja

    sample = json.loads((fixtures_dir / "mpesa/stk_callback_success_safaricom_sample.json").read_text())["samples"][0]
    with FakeDaraja() as daraja:
        rig = Rig(db_url, anvil, daraja_url=daraja.url, **SETTINGS)
        try:
            r = await rig.client.post("/mpesa/stkpush", json={"phone": "254700000001", "amount": 1,
                                                               "target": {"order_id": rig.world.order_ids[0]}}, headers=SHOP)
            assert r.status_code == 202, r.text
            sample["Body"]["stkCallback"]["CheckoutRequestID"] = r.json()["checkout_request_id"]
            r = await rig.client.post("/webhooks/mpesa/cb-secret-123", json=sample)
            assert r.status_code == 200, r.text
            key = r.json()["intent"]
            assert (await rig.client.get(f"/intents/{key}")).json() == {"key": key, "status": "pending"}
            assert "attempts" in (await rig.client.get(f"/intents/{key}", headers=SHOP)).json()
            assert (await rig.client.get(f"/intents/{key}", headers=KIOSK)).status_code == 403
        finally:
            rig.close()


def w3_address(a: str) -> str:
    from eth_utils import to_checksum_address

    return to_checksum_address(a)
