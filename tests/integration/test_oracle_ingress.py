"""Every ingress on a real Postgres + anvil: bad input changes nothing, M-Pesa via a local Daraja, IoT proofs
verified by IoTAnchor.verify on chain, QR settlements, verification approvals -> mint."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx
import pytest

from oracle.testing import WHSEC, count_events, payment_event, signed
from tests.integration.oracle_rig import Rig
from tests.integration.oracle_fixtures import _no_key_in_logs, anyio_backend, daraja, localstripe  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.anvil, pytest.mark.anyio]


DEVICE_KEY = "device-key-1"
SHOP_PAYOUT = "0x00000000000000000000000000000000005a1e01"
SETTINGS = {"merchant_tokens": {"shop": "tok-merchant"}, "merchant_payout_addresses": {"shop": SHOP_PAYOUT},
            "verifier_tokens": {"vera": "tok-verifier", "otto": "tok-approver"}, "iot_device_keys": {"dev-1": DEVICE_KEY}}


@pytest.fixture()
def rig(db_url, anvil, daraja, localstripe):
    r = Rig(db_url, anvil, daraja_url=daraja.url, stripe=localstripe, **SETTINGS)
    yield r
    r.close()


def counts(rig) -> tuple[int, int]:
    with rig.pool.connection() as c:
        return (c.execute("SELECT count(*) FROM oracle_intent").fetchone()[0],
                c.execute("SELECT count(*) FROM oracle_provider_event").fetchone()[0])


async def test_stripe_bad_input_is_refused_and_writes_nothing(rig):
    pi = rig.stripe.payment_intent({"order_id": str(rig.world.order_ids[0])})
    ev = payment_event(pi["id"], {"order_id": str(rig.world.order_ids[0])})
    body, headers = signed(ev)
    cases = [
        ({**headers, "stripe-signature": ""}, body, 400, "missing_signature"),
        ({**headers, "stripe-signature": headers["stripe-signature"][:-4] + "0000"}, body, 400, "bad_signature"),
        (signed(ev, secret="whsec_wrong")[1], body, 400, "bad_signature"),
        (signed(ev, timestamp=int(time.time()) - 3600)[1], body, 400, "stale_timestamp"),
        (signed(ev, timestamp=int(time.time()) + 3600)[1], body, 400, "future_timestamp"),
        (headers, body + b" ", 400, "bad_signature"),  # body changed after signing
        ({**headers, "content-type": "text/plain"}, body, 415, "unsupported_media_type"),
    ]
    for hdrs, b, status, code in cases:
        r = await rig.client.post("/webhooks/stripe", content=b, headers=hdrs)
        assert (r.status_code, r.json()["error"]) == (status, code), r.text
    junk = b"{not json"
    r = await rig.client.post("/webhooks/stripe", content=junk, headers=_sig(junk))
    assert (r.status_code, r.json()["error"]) == (400, "malformed_json")
    big = json.dumps({**ev, "pad": "x" * 70_000}).encode()
    r = await rig.client.post("/webhooks/stripe", content=big, headers=_sig(big))
    assert (r.status_code, r.json()["error"]) == (413, "body_too_large")
    assert counts(rig) == (0, 0)
    # the rotated-out secret still verifies (several secrets configured during rotation)
    rig.app.stripe_secrets.append("whsec_old")
    r = await rig.client.post("/webhooks/stripe", content=body, headers=signed(ev, secret="whsec_old")[1])
    assert r.status_code == 200 and counts(rig) == (1, 1)


def _sig(body: bytes) -> dict[str, str]:
    import stripe

    return {"stripe-signature": stripe.WebhookSignature.generate_signature_header(body.decode(), WHSEC),
            "content-type": "application/json"}


async def test_stripe_refund_dispute_unknown_and_bad_metadata(rig, fixtures_dir):
    res = json.loads((fixtures_dir / "stripe/stripe_fixtures3_subset_payments.json").read_text())["resources"]
    refund = {"id": "evt_refund", "type": "refund.created", "data": {"object": {**res["refund"], "payment_intent": "pi_r"}}}
    dispute = {"id": "evt_dispute", "type": "charge.dispute.created", "data": {"object": res["dispute"]}}
    unknown = res["event"]  # plan.created
    for ev in (refund, dispute, unknown):
        r = await rig.post_event(ev)
        assert r.status_code == 200, r.text
    _, r = await rig.pay({"listing_id": "1", "buyer": "not-an-address", "amount": "1"}, event_id="evt_meta")
    assert r.status_code == 200, r.text
    with rig.pool.connection() as c:
        flags = dict(c.execute("SELECT event_id, flag FROM oracle_provider_event").fetchall())
        refs = dict(c.execute("SELECT event_id, payment_ref FROM oracle_provider_event").fetchall())
    assert flags == {"evt_refund": "refund", "evt_dispute": "dispute", unknown["id"]: None, "evt_meta": "invalid_metadata"}
    assert refs["evt_refund"] == "pi_r"
    assert counts(rig)[0] == 0  # none of these writes to chain


async def _push(rig, target: dict, amount: int = 1) -> str:
    r = await rig.client.post("/mpesa/stkpush", json={"phone": "254700000001", "amount": amount, "target": target},
                              headers={"authorization": "Bearer tok-merchant"})
    assert r.status_code == 202, r.text
    return r.json()["checkout_request_id"]


def _callback(sample: dict, cid: str, **changes) -> dict:
    cb = json.loads(json.dumps(sample))
    cb["Body"]["stkCallback"]["CheckoutRequestID"] = cid
    cb["Body"]["stkCallback"].update(changes)
    return cb


async def test_mpesa_callback_confirmed_by_stk_query(rig, daraja, fixtures_dir):
    sample = json.loads((fixtures_dir / "mpesa/stk_callback_success_safaricom_sample.json").read_text())["samples"][0]
    path = "/webhooks/mpesa/cb-secret-123"
    cid = await _push(rig, {"order_id": rig.world.order_ids[0]})
    assert "PhoneNumber" not in json.dumps(daraja.pushes)  # the fake keeps no phone either
    # wrong secret path, and a source outside the allowlist
    assert (await rig.client.post("/webhooks/mpesa/wrong", json=_callback(sample, cid))).status_code == 404
    foreign = httpx.AsyncClient(transport=httpx.ASGITransport(app=rig.app.asgi(), client=("10.9.9.9", 1)), base_url="http://o")
    assert (await foreign.post(path, json=_callback(sample, cid))).status_code == 403
    # unknown checkout, malformed, spoof (Daraja says cancelled); a wrong amount: test_oracle_payments
    assert (await rig.client.post(path, json=_callback(sample, "ws_CO_unknown"))).status_code == 404
    assert (await rig.client.post(path, json={"Body": {}})).status_code == 400
    daraja.results[cid] = "1032"
    r = await rig.client.post(path, json=_callback(sample, cid))
    assert (r.status_code, r.json()["error"]) == (409, "callback_disputed")
    daraja.results[cid] = "0"
    assert counts(rig) == (0, 0)
    # the real thing: ResultCode as a string, Balance item without Value
    ok = _callback(sample, cid, ResultCode="0")
    for _ in range(2):  # Safaricom may deliver twice
        r = await rig.client.post(path, json=ok)
        assert r.status_code == 200 and r.json()["intent"] == "mpesa:LGR7OWQX0R", r.text
    assert counts(rig) == (1, 1)
    rig.drain()
    assert rig.status("mpesa:LGR7OWQX0R") == "confirmed"
    funded = count_events(rig.world.w3, rig.world.contract("Escrow"), "Funded")
    assert [f["paymentRef"] for f in funded] == ["LGR7OWQX0R"]
    # a cancelled push, confirmed by the query, is recorded without a write
    cid2 = await _push(rig, {"order_id": rig.world.order_ids[1]})
    daraja.results[cid2] = "1032"
    cancelled = _callback(sample, cid2, ResultCode=1032, ResultDesc="Request cancelled by user")
    del cancelled["Body"]["stkCallback"]["CallbackMetadata"]
    r = await rig.client.post(path, json=cancelled)
    assert r.status_code == 200 and r.json()["intent"] is None
    assert counts(rig) == (1, 2)
    with rig.pool.connection() as c:
        assert c.execute("SELECT status FROM oracle_mpesa_request WHERE checkout_request_id = %s", (cid2,)).fetchone()[0] == "failed"
        dump = json.dumps(c.execute("SELECT summary FROM oracle_provider_event").fetchall())
    assert "254721566839" not in dump and "254700000001" not in dump


def _fail_updates_of_initiating_requests(rig, on: bool, event: str = "UPDATE") -> None:
    """A real database failure (SQLSTATE 08006, connection failure) on the request row right after/before a push."""
    with rig.pool.connection() as c:
        if on:
            c.execute("CREATE OR REPLACE FUNCTION cl_fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                      "RAISE EXCEPTION 'injected failure' USING ERRCODE = '08006'; END $$")
            when = " WHEN (OLD.status = 'initiating')" if event == "UPDATE" else ""
            c.execute(f"CREATE TRIGGER cl_fail BEFORE {event} ON oracle_mpesa_request FOR EACH ROW{when} "
                      "EXECUTE FUNCTION cl_fail()")
        else:
            c.execute("DROP TRIGGER IF EXISTS cl_fail ON oracle_mpesa_request")


async def test_mpesa_push_is_recorded_before_it_is_sent_and_adopted_when_its_link_is_lost(rig, daraja, fixtures_dir):
    """Nothing is lost around the STK push: the request row is written before Daraja is called (a database
    failure then sends nothing), and a push whose CheckoutRequestID could not be saved is adopted by its callback,
    confirmed by Daraja's status query; two such pushes of the same amount are not guessed between."""
    sample = json.loads((fixtures_dir / "mpesa/stk_callback_success_safaricom_sample.json").read_text())["samples"][0]
    path = "/webhooks/mpesa/cb-secret-123"
    order = {"order_id": rig.world.order_ids[0]}
    # the database fails before the push: 503 and no push sent
    _fail_updates_of_initiating_requests(rig, True, "INSERT")
    r = await rig.client.post("/mpesa/stkpush", json={"phone": "254700000001", "amount": 1, "target": order},
                              headers={"authorization": "Bearer tok-merchant"})
    assert r.status_code == 503 and daraja.pushes == []
    _fail_updates_of_initiating_requests(rig, False)
    # the database fails right after the push: the push is answered, the request stays 'initiating'
    _fail_updates_of_initiating_requests(rig, True)
    cid = await _push(rig, order)
    _fail_updates_of_initiating_requests(rig, False)
    with rig.pool.connection() as c:
        assert c.execute("SELECT status FROM oracle_mpesa_request").fetchall() == [("initiating",)]
    # an unknown, unpaid callback is still refused; the paid one adopts the request
    cancelled = _callback(sample, "ws_CO_other", ResultCode=1032)
    del cancelled["Body"]["stkCallback"]["CallbackMetadata"]
    assert (await rig.client.post(path, json=cancelled)).status_code == 404
    r = await rig.client.post(path, json=_callback(sample, cid, ResultCode="0"))
    assert r.status_code == 200 and r.json()["intent"] == "mpesa:LGR7OWQX0R", r.text
    assert len(daraja.pushes) == 1 and cid in daraja.queries
    with rig.pool.connection() as c:
        assert c.execute("SELECT checkout_request_id, status FROM oracle_mpesa_request").fetchall() == [(cid, "paid")]
    rig.drain()
    assert rig.status("mpesa:LGR7OWQX0R") == "confirmed"
    funded = count_events(rig.world.w3, rig.world.contract("Escrow"), "Funded")
    assert [f["paymentRef"] for f in funded] == ["LGR7OWQX0R"]
    # two lost links of the same amount: the payment is kept, flagged for a human, and pays for neither
    _fail_updates_of_initiating_requests(rig, True)
    cids = [await _push(rig, {"order_id": rig.world.order_ids[1]}) for _ in range(2)]
    _fail_updates_of_initiating_requests(rig, False)
    paid = _callback(sample, cids[0], ResultCode="0")
    paid["Body"]["stkCallback"]["CallbackMetadata"]["Item"][1]["Value"] = "LGR7OWQX0S"
    r = await rig.client.post(path, json=paid)
    assert r.status_code == 200 and r.json()["intent"] is None, r.text
    with rig.pool.connection() as c:
        assert c.execute("SELECT flag, payment_ref FROM oracle_provider_event WHERE event_id = %s",
                         (f"{cids[0]}:LGR7OWQX0S",)).fetchone() == ("unmatched_payment", "LGR7OWQX0S")
        assert c.execute("SELECT count(*) FROM oracle_mpesa_request WHERE status = 'initiating'").fetchone()[0] == 2
    assert counts(rig)[0] == 1


def _reading(ts: int, co2: float, **extra) -> tuple[bytes, dict]:
    body = json.dumps({"device_id": "dev-1", "ts": ts, "metrics": {"co2_ppm": co2, "temperature_c": 21.5},
                       "battery_pct": 80, "calibrated_at": ts - 86400, **extra}).encode()
    sig = hmac.new(DEVICE_KEY.encode(), body, hashlib.sha256).hexdigest()
    return body, {"x-device-id": "dev-1", "x-signature": sig, "content-type": "application/json"}


async def test_iot_readings_anchor_and_verify_on_chain(rig):
    now = int(time.time())
    ids = []
    for i in range(7):
        body, h = _reading(now - 100 + i, 410 + i)
        r = await rig.client.post("/iot/readings", content=body, headers=h)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    body, h = _reading(now - 50, 4000)  # a spike against the recent readings
    r = await rig.client.post("/iot/readings", content=body, headers=h)
    assert "spike:co2_ppm" in r.json()["flags"] and r.json()["quality"] < 10000
    ids.append(r.json()["id"])
    r = await rig.client.post("/iot/readings", content=body, headers=h)  # duplicate delivery
    assert r.status_code == 200 and r.json()["duplicate"]
    # refused: unknown device, bad MAC, impossible value, future ts, unknown field
    bad = [({**h, "x-device-id": "dev-9"}, body, 401), ({**h, "x-signature": "00" * 32}, body, 401)]
    for payload in ({"metrics": {"humidity_pct": 150}}, {"ts": now + 3600}, {"colour": "red"}):
        b, hh = _reading(now - 10, 420)
        d = {**json.loads(b), **payload}
        b = json.dumps(d).encode()
        hh["x-signature"] = hmac.new(DEVICE_KEY.encode(), b, hashlib.sha256).hexdigest()
        bad.append((hh, b, 422))
    for hh, b, status in bad:
        assert (await rig.client.post("/iot/readings", content=b, headers=hh)).status_code == status
    from oracle.reconciliation import run_anchor

    key = run_anchor(rig.pool, "local", rig.settings)
    assert key and run_anchor(rig.pool, "local", rig.settings) is None
    rig.drain()
    assert rig.status(key) == "confirmed"
    anchor = rig.world.contract("IoTAnchor")
    for rid in ids:
        p = (await rig.client.get(f"/iot/readings/{rid}/proof")).json()
        assert p["anchor_status"] == "confirmed"
        proof = [bytes.fromhex(x[2:]) for x in p["proof"]]
        root, leaf = bytes.fromhex(p["root"][2:]), bytes.fromhex(p["leaf"][2:])
        assert anchor.functions.verify(root, leaf, proof).call()
        # tamper with the reading: its leaf no longer verifies
        from chains.merkle import hash_leaf

        tampered = p["canonical"].replace('"co2_ppm":4', '"co2_ppm":5', 1).replace('"co2_ppm":41', '"co2_ppm":99', 1)
        assert tampered != p["canonical"]
        assert not anchor.functions.verify(root, hash_leaf(tampered.encode()), proof).call()
    assert len(count_events(rig.world.w3, anchor, "Anchored")) == 1


async def test_settlement_and_verification_mint(rig):
    w = rig.world
    merchant = {"authorization": "Bearer tok-merchant"}
    assert (await rig.client.post("/qr/orders", json={})).status_code == 401
    r = await rig.client.post("/qr/orders", json={}, headers=merchant)  # the oracle issues the hash for the QR code
    assert r.status_code == 201, r.text
    order_hash = r.json()["order_hash"]
    body = {"order_hash": order_hash}
    assert (await rig.client.post("/settlements", json=body)).status_code == 401
    assert (await rig.client.post("/settlements", json=body, headers={"authorization": "Bearer nope"})).status_code == 401
    bad = await rig.client.post("/settlements", json={**body, "order_hash": "0x12"}, headers=merchant)
    assert bad.status_code == 422
    tx = w.contract("QRPayment").functions.pay(order_hash).transact({"from": w.w3.eth.accounts[3], "value": 7})
    w.w3.eth.wait_for_transaction_receipt(tx)
    rig.index()
    for _ in range(2):
        r = await rig.client.post("/settlements", json=body, headers=merchant)
        assert r.status_code == 202 and r.json()["intent"] == f"qr:{order_hash}", r.text
    req = {"id": "ver-1", "recipient": w.w3.eth.accounts[5], "batch_id": w.batch_id, "amount": "250",
           "evidence": {"report": "ipfs://x", "tonnes": 250}}
    auth, approver = {"authorization": "Bearer tok-verifier"}, {"authorization": "Bearer tok-approver"}
    assert (await rig.client.post("/verifications", json=req, headers=merchant)).status_code == 401
    r = await rig.client.post("/verifications", json=req, headers=auth)
    assert r.status_code == 201, r.text
    vhash = r.json()["verification_hash"]
    assert (await rig.client.post("/verifications", json={**req, "amount": "999"}, headers=auth)).status_code == 409
    for _ in range(2):
        r = await rig.client.post("/verifications/ver-1/approve", headers=approver)
        assert r.status_code == 202 and r.json()["intent_key"] == f"mint:{vhash}"
    assert (await rig.client.post("/verifications/nope/approve", headers=approver)).status_code == 404
    rig.drain()
    assert rig.status(f"qr:{order_hash}") == "confirmed" and rig.status(f"mint:{vhash}") == "confirmed"
    settled = count_events(w.w3, w.contract("QRPayment"), "Settled")
    minted = count_events(w.w3, w.contract("CarbonCredit"), "Minted")
    assert [(s["beneficiary"].lower(), s["amount"]) for s in settled] == [(SHOP_PAYOUT, 7)]
    assert [m["amount"] for m in minted if m["verificationHash"] == bytes.fromhex(vhash[2:])] == [250]
    ops = await rig.client.get("/metrics")
    assert ops.status_code == 200
    assert (await rig.client.get("/ready")).json()["ready"] is True
    assert (await rig.client.get("/intents/qr:nope")).status_code == 404


async def test_mpesa_daraja_down_is_retryable_and_writes_nothing(db_url, anvil, fixtures_dir):
    """Daraja unreachable: the callback cannot be confirmed, so 503 (Safaricom retries) and nothing is recorded."""
    from core.anvil import free_port
    from oracle import records

    rig = Rig(db_url, anvil, daraja_url=f"http://127.0.0.1:{free_port()}", **SETTINGS)
    try:
        records.save_mpesa_request(rig.pool, "m-1", "ws_CO_1", 1, {"order_id": "1"})
        sample = json.loads((fixtures_dir / "mpesa/stk_callback_success_safaricom_sample.json").read_text())["samples"][0]
        r = await rig.client.post("/webhooks/mpesa/cb-secret-123", json=_callback(sample, "ws_CO_1"))
        assert (r.status_code, r.json()["error"]) == (503, "daraja_unavailable")
        assert counts(rig) == (0, 0)
    finally:
        rig.close()


async def test_nul_characters_are_refused_not_500(rig):
    """Postgres text cannot hold U+0000: a NUL in a verifier-supplied id or a path key is a 4xx, never a 500."""
    w = rig.world
    auth = {"authorization": "Bearer tok-verifier"}
    req = {"id": "ver-\u0000", "recipient": w.w3.eth.accounts[5], "batch_id": w.batch_id, "amount": "1", "evidence": {}}
    r = await rig.client.post("/verifications", json=req, headers=auth)
    assert r.status_code == 422, r.text
    assert (await rig.client.post("/verifications/ver-%00/approve", headers=auth)).status_code == 422
    assert (await rig.client.get("/intents/qr:%00")).status_code == 422
    r = await rig.client.post("/verifications", json={**req, "id": "ver-2"}, headers=auth)
    assert r.status_code == 201, r.text  # nothing half-written by the refused requests


async def test_mpesa_push_refused_or_daraja_down_is_4xx_5xx_not_500(rig):
    """A phone Daraja refuses is the merchant's input (422); Daraja unreachable is a retryable 503; both leave only
    a 'refused' request (recorded before the push, nothing to adopt later)."""
    from core.anvil import free_port
    from oracle.app import OracleApp
    from oracle.ingress.mpesa import make_daraja

    auth = {"authorization": "Bearer tok-merchant"}
    body = {"phone": "0700000001", "amount": 1, "target": {"order_id": str(rig.world.order_ids[0])}}
    r = await rig.client.post("/mpesa/stkpush", json=body, headers=auth)
    assert (r.status_code, r.json()["error"]) == (422, "stk_push_refused"), r.text
    settings = rig.settings.model_copy(update={"mpesa_api_base": f"http://127.0.0.1:{free_port()}"})
    down = OracleApp(rig.pool, settings, "local", daraja=make_daraja(settings))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=down.asgi()), base_url="http://o") as client:
        r = await client.post("/mpesa/stkpush", json={**body, "phone": "254700000001"}, headers=auth)
    assert (r.status_code, r.json()["error"]) == (503, "daraja_unavailable"), r.text
    with rig.pool.connection() as c:
        assert c.execute("SELECT status FROM oracle_mpesa_request").fetchall() == [("refused",), ("refused",)]
