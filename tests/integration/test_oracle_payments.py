"""A payment pays at most once, and only for what it pays for (DESIGN invariants 6-8), on a real Postgres, anvil,
the real indexer, localstripe for Stripe's API and a local Daraja speaking the wire format of the real fixtures.

- M-Pesa: one checkout is decided once, by a database constraint: a second receipt for it (SWAP01, SWAP02, ...) is a
  flagged event, never a write, also when two oracles race; the callback's amount must be what was pushed and
  cover the order/listing price.
- Stripe: the PaymentIntent is re-fetched from Stripe's API and checked (status, livemode, currency, amount against
  the indexed price) before any write; an order paid another way is `double_paid`.
- A payment whose listing is not indexed yet waits (pending), is never written unchecked, and is decided once the
  indexer catches up (or flagged after the configured age).
- A listing is never oversold: accepted payments not yet indexed as settled count against its remaining credits,
  under a per-listing lock (two oracles too). A write the chain refuses all the same is never kept silently: its
  payment is flagged double_paid (the order was funded another way meanwhile) or write_failed, refund due.
- Two deliveries of a callback whose push lost its link adopt it once and write it once.
- Every number from a provider goes through the bounded parsers: no 500, no long parse.
"""

from __future__ import annotations

import json
import logging
import time

import anyio
import httpx
import pytest

from oracle.testing import count_events, payment_event, signed
from tests.integration.oracle_rig import Rig
from tests.integration.oracle_fixtures import _no_key_in_logs, anyio_backend, daraja, localstripe  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.anvil, pytest.mark.anyio]

PATH = "/webhooks/mpesa/cb-secret-123"
MERCHANT = {"authorization": "Bearer tok-merchant"}
PHONES = ("254721566839", "254700000001")  # the fixture's and ours: personal data, never stored or logged


@pytest.fixture()
def rig(db_url, anvil, daraja, localstripe):
    r = Rig(db_url, anvil, daraja_url=daraja.url, stripe=localstripe, merchant_tokens={"shop": "tok-merchant"})
    yield r
    r.close()


@pytest.fixture()
def sample(fixtures_dir) -> dict:
    return json.loads((fixtures_dir / "mpesa/stk_callback_success_safaricom_sample.json").read_text())["samples"][0]


def callback(sample: dict, cid: str, receipt: str | None = None, amount=None, **changes) -> dict:
    cb = json.loads(json.dumps(sample))
    stk = cb["Body"]["stkCallback"]
    stk["CheckoutRequestID"] = cid
    stk.update(changes)
    items = {i["Name"]: i for i in stk["CallbackMetadata"]["Item"]}
    if receipt is not None:
        items["MpesaReceiptNumber"]["Value"] = receipt
    if amount is not None:
        items["Amount"]["Value"] = amount
    return cb


async def push(rig, target: dict, amount: int = 1) -> str:
    r = await rig.client.post("/mpesa/stkpush", json={"phone": PHONES[1], "amount": amount, "target": target},
                              headers=MERCHANT)
    assert r.status_code == 202, r.text
    return r.json()["checkout_request_id"]


def rows(rig, sql: str, *args) -> list[tuple]:
    with rig.pool.connection() as c:
        return c.execute(sql, args).fetchall()


def intents(rig) -> list[str]:
    return [k for (k,) in rows(rig, "SELECT idempotency_key FROM oracle_intent ORDER BY id")]


def events(rig) -> dict[str, tuple]:
    return {e: (s, f) for e, s, f in rows(rig, "SELECT event_id, status, flag FROM oracle_provider_event")}


def listing_target(rig, units: int = 5, listing: int | None = None) -> dict[str, str]:
    w = rig.world
    return {"listing_id": str(listing or w.listing_id), "buyer": w.w3.eth.accounts[3], "amount": str(units)}


def fresh_listing(rig, credits: int, price: int = 1) -> int:
    """A new listing of `credits` at `price` wei per credit, indexed; its id."""
    w = rig.world
    cc, mk = w.contract("CarbonCredit"), w.contract("Marketplace")
    for call in (cc.functions.mint(w.admin, w.batch_id, credits, b"\x55" * 32), mk.functions.list(w.batch_id, credits, price)):
        w.w3.eth.wait_for_transaction_receipt(call.transact({"from": w.admin}))
    rig.index()
    return mk.functions.listingCount().call()


def blocked(rig) -> int:
    """How many other sessions of this database wait for a lock (pg_locks, through pg_blocking_pids)."""
    return rows(rig, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                     " AND cardinality(pg_blocking_pids(pid)) > 0")[0][0]


async def until_blocked(rig, n: int, what: str) -> None:
    deadline = time.monotonic() + 60
    while blocked(rig) < n:
        assert time.monotonic() < deadline, f"{what} never met at the lock"
        await anyio.sleep(0.02)


# ---- A: M-Pesa ---------------------------------------------------------------------------------------------------
async def test_mpesa_checkout_pays_once_whatever_its_receipts(rig, sample, caplog):
    """Three callbacks for one paid checkout under new receipt numbers: one intent, one on-chain write; the other
    receipts are kept as events flagged conflicting_receipt (logged, counted), never written."""
    cid = await push(rig, listing_target(rig))
    for receipt in ("SWAP01", "SWAP02", "SWAP03", "SWAP02"):
        r = await rig.client.post(PATH, json=callback(sample, cid, receipt))
        assert r.status_code == 200, r.text
    assert intents(rig) == ["mpesa:SWAP01"]
    ev = events(rig)
    assert ev[f"{cid}:SWAP01"] == ("accepted", None)
    assert ev[f"{cid}:SWAP02"] == ev[f"{cid}:SWAP03"] == ("flagged", "conflicting_receipt")
    assert rows(rig, "SELECT status, receipt FROM oracle_mpesa_request") == [("paid", "SWAP01")]
    rig.drain()
    sold = count_events(rig.world.w3, rig.world.contract("Marketplace"), "Sold")
    assert [s["paymentRef"] for s in sold] == ["SWAP01"]
    flagged = [r for r in caplog.records if getattr(r, "flag", None) == "conflicting_receipt"]
    assert flagged and all(r.levelno == logging.WARNING for r in flagged)
    metrics = (await rig.client.get("/metrics")).text
    assert 'oracle_payment_events{flag="conflicting_receipt",provider="mpesa",status="flagged"} 2.0' in metrics
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert not any(p in logged for p in PHONES)


async def test_two_oracles_racing_on_one_checkout_write_once(rig, daraja, sample, db_url):
    """Two oracles get duplicate and swapped-receipt callbacks for one checkout at the same moment. All of them pass
    the code's "already paid?" read before any commits (held there by a table lock), so only the database's
    constraint stands between them and a second write: one intent."""
    from psycopg_pool import ConnectionPool

    from oracle.app import OracleApp
    from oracle.ingress.mpesa import make_daraja

    cid = await push(rig, {"order_id": str(rig.world.order_ids[0])})
    pool_b = ConnectionPool(rig.url, min_size=1, max_size=4, open=True)
    other = OracleApp(pool_b, rig.settings, "local", daraja=make_daraja(rig.settings))
    client_b = httpx.AsyncClient(transport=httpx.ASGITransport(app=other.asgi()), base_url="http://oracle-b")
    results: list[httpx.Response] = []

    async def deliver(client, receipt):
        results.append(await client.post(PATH, json=callback(sample, cid, receipt)))

    def waiting() -> int:
        return rows(rig, "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                         " WHERE c.relname = 'oracle_payment' AND NOT l.granted")[0][0]

    try:
        with rig.pool.connection() as gate:
            gate.execute("LOCK TABLE oracle_payment IN SHARE MODE")  # reads pass, inserts wait
            async with anyio.create_task_group() as tg:
                tg.start_soon(deliver, rig.client, "RACE01")
                tg.start_soon(deliver, client_b, "RACE01")  # the same callback to the other oracle
                tg.start_soon(deliver, client_b, "RACE02")
                deadline = time.monotonic() + 60
                try:
                    while waiting() < 2:  # both receipts' transactions are at their INSERT
                        assert time.monotonic() < deadline, "the deliveries never reached the payment insert"
                        await anyio.sleep(0.02)
                finally:
                    gate.commit()  # also when the wait failed: the deliveries wait on the gate
    finally:
        await client_b.aclose()
        pool_b.close()
    assert sorted(r.status_code for r in results) == [200, 200, 200], [r.text for r in results]
    assert len(intents(rig)) == 1
    won = intents(rig)[0].split(":")[1]
    lost = {"RACE01": "RACE02", "RACE02": "RACE01"}[won]
    assert events(rig)[f"{cid}:{lost}"] == ("flagged", "conflicting_receipt")
    assert rows(rig, "SELECT payment_ref FROM oracle_payment") == [(won,)]
    rig.drain()
    funded = count_events(rig.world.w3, rig.world.contract("Escrow"), "Funded")
    assert [f["paymentRef"] for f in funded] == [won]


async def test_two_deliveries_adopting_one_lost_push_write_it_once(rig, daraja, sample):
    """A push whose CheckoutRequestID was never saved (the database failed right after it) is paid, and its callback
    arrives twice at the same moment: both deliveries find no request, Daraja confirms both, both go to adopt the one
    unlinked push and meet at its row lock (held by the test until both wait there). One adopts it; the other must
    find it adopted and settle the same payment, never record it as unmatched: that event, winning the race to the
    event row, used to drop the paid checkout. One intent, one write, and both answers name it."""
    from oracle import records

    provisional = records.begin_mpesa_request(rig.pool, 1, {"order_id": str(rig.world.order_ids[0])}, "shop")
    cid = "ws_CO_lost_link"
    daraja.results[cid] = "0"
    results: list[httpx.Response] = []

    async def deliver() -> None:
        results.append(await rig.client.post(PATH, json=callback(sample, cid)))

    with rig.pool.connection() as gate:
        gate.execute("SELECT 1 FROM oracle_mpesa_request WHERE checkout_request_id = %s FOR UPDATE", (provisional,))
        async with anyio.create_task_group() as tg:
            tg.start_soon(deliver)
            tg.start_soon(deliver)
            try:
                await until_blocked(rig, 2, "the two deliveries")
            finally:
                gate.commit()  # also when the wait failed: the deliveries wait on the gate
    assert [r.status_code for r in results] == [200, 200], [r.text for r in results]
    assert [r.json()["intent"] for r in results] == ["mpesa:LGR7OWQX0R"] * 2, [r.text for r in results]
    assert intents(rig) == ["mpesa:LGR7OWQX0R"]
    assert events(rig) == {f"{cid}:LGR7OWQX0R": ("accepted", None)}
    assert rows(rig, "SELECT checkout_request_id, status FROM oracle_mpesa_request") == [(cid, "paid")]
    rig.drain()
    funded = count_events(rig.world.w3, rig.world.contract("Escrow"), "Funded")
    assert [f["paymentRef"] for f in funded] == ["LGR7OWQX0R"]


async def test_mpesa_amount_must_match_the_push_and_the_price(rig, daraja, sample):
    """The callback's Amount must be what the checkout was pushed for and cover the on-chain price (KES through
    oracle.fiat_rates); a mismatch is a flagged event, not a write. A push that could not pay is not sent."""
    from oracle import records

    order = {"order_id": str(rig.world.order_ids[0])}  # 1000 wei; 1 KES buys 2000 wei
    cid = await push(rig, order, amount=1)
    r = await rig.client.post(PATH, json=callback(sample, cid, "AMT005", amount=5))
    assert r.status_code == 200 and r.json()["flag"] == "amount_mismatch", r.text
    cid2 = await push(rig, order, amount=1)
    r = await rig.client.post(PATH, json=callback(sample, cid2, "AMT150", amount="1.50"))  # a fraction of a push
    assert r.status_code == 200 and r.json()["flag"] == "amount_mismatch", r.text
    # a push of 2 KES (4000 wei) for 5000 credits at 1 wei is refused before Daraja is asked ...
    big = listing_target(rig, units=5000)
    pushes = len(daraja.pushes)
    r = await rig.client.post("/mpesa/stkpush", json={"phone": PHONES[1], "amount": 2, "target": big}, headers=MERCHANT)
    assert (r.status_code, r.json()["error"]) == (422, "amount_mismatch") and len(daraja.pushes) == pushes
    # ... and one that got through anyway (recorded before this check existed, say) is flagged at the callback
    records.save_mpesa_request(rig.pool, "m-low", "ws_CO_low", 2, big)
    daraja.results["ws_CO_low"] = "0"
    r = await rig.client.post(PATH, json=callback(sample, "ws_CO_low", "AMTLOW", amount=2))
    assert r.status_code == 200 and r.json()["flag"] == "amount_mismatch", r.text
    assert intents(rig) == []
    assert {s for (s,) in rows(rig, "SELECT status FROM oracle_mpesa_request")} == {"flagged"}
    problems = [p for (p,) in rows(rig, "SELECT summary->>'problem' FROM oracle_provider_event")]
    assert any("asked for 100" in p for p in problems) and any("the price is 5000 wei" in p for p in problems)


# ---- B: Stripe ---------------------------------------------------------------------------------------------------
async def test_stripe_unpaid_payment_intent_is_flagged_not_written(rig, fixtures_dir):
    """The real fixture PaymentIntent (status requires_payment_method, amount_received 0) delivered as
    payment_intent.succeeded: Stripe's API is asked, says unpaid, and nothing is written; a body that lies about
    it (succeeded, 1099 received) changes nothing, and a PaymentIntent Stripe does not know is flagged too."""
    fixture = json.loads((fixtures_dir / "stripe/stripe_fixtures3_subset_payments.json").read_text())
    pi_fixture = fixture["resources"]["payment_intent"]
    meta = {"order_id": str(rig.world.order_ids[0])}
    unpaid = rig.stripe.payment_intent(meta, amount=pi_fixture["amount"], currency=pi_fixture["currency"], paid=False)
    body = {**pi_fixture, "id": unpaid["id"], "metadata": meta}
    ev = {"id": "evt_unpaid", "type": "payment_intent.succeeded", "data": {"object": body}}
    lie = {"id": "evt_lie", "type": "payment_intent.succeeded",
           "data": {"object": {**body, "status": "succeeded", "amount_received": 1099}}}
    unknown = {"id": "evt_unknown", "type": "payment_intent.succeeded",
               "data": {"object": {**pi_fixture, "metadata": meta}}}  # pi_1Pgafy...: not in this Stripe account
    for e in (ev, lie, unknown):
        r = await rig.post_event(e)
        assert r.status_code == 200 and r.json()["intent"] is None, r.text
    assert events(rig) == {"evt_unpaid": ("flagged", "payment_not_succeeded"),
                           "evt_lie": ("flagged", "payment_not_succeeded"),
                           "evt_unknown": ("flagged", "payment_not_found")}
    assert intents(rig) == [] and rows(rig, "SELECT count(*) FROM oracle_payment") == [(0,)]
    rig.drain()
    assert count_events(rig.world.w3, rig.world.contract("Escrow"), "Funded") == []


async def test_stripe_currency_amount_and_livemode_are_checked(rig, localstripe):
    """Currency configured, amount_received covering the indexed price x credits, livemode as configured; only
    then a write. Stripe unreachable or not configured: 503 (Stripe retries), nothing recorded."""
    target = listing_target(rig, units=5)  # 5 credits at 1 wei = 5 wei; 1 cent buys 1 wei
    _, r = await rig.pay(target, amount=500, currency="eur")
    assert r.json()["flag"] == "currency_mismatch", r.text
    _, r = await rig.pay(target, amount=4)
    assert r.json()["flag"] == "amount_mismatch", r.text
    ok, r = await rig.pay(target, amount=5)
    assert r.json()["outcome"] == "accepted" and r.json()["intent"] == f"stripe:{ok}", r.text
    from oracle.app import OracleApp

    async def via(**changes) -> httpx.Response:
        app = OracleApp(rig.pool, rig.settings.model_copy(update=changes), "local")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app.asgi()), base_url="http://o") as c:
            pi = localstripe.payment_intent(target, amount=5)
            body, headers = signed(payment_event(pi["id"], target, amount=5))
            return await c.post("/webhooks/stripe", content=body, headers=headers)

    r = await via(stripe_livemode=True)
    assert r.json()["flag"] == "livemode_mismatch", r.text
    before = rows(rig, "SELECT count(*) FROM oracle_provider_event")
    from core.anvil import free_port

    r = await via(stripe_api_base=f"http://127.0.0.1:{free_port()}")
    assert (r.status_code, r.json()["error"]) == (503, "stripe_unavailable"), r.text
    r = await via(stripe_api_key=None)
    assert (r.status_code, r.json()["error"]) == (503, "not_configured"), r.text
    assert rows(rig, "SELECT count(*) FROM oracle_provider_event") == before
    assert intents(rig) == [f"stripe:{ok}"]
    rig.drain()
    sold = count_events(rig.world.w3, rig.world.contract("Marketplace"), "Sold")
    assert [(s["paymentRef"], s["amount"]) for s in sold] == [(ok, 5)]


async def test_order_paid_another_way_is_double_paid(rig, daraja, sample):
    """One escrow order, one accepted payment (a partial unique index): a second PaymentIntent, an M-Pesa push for
    it, and a payment for an order already funded on chain with ETH are flagged double_paid, never written."""
    w = rig.world
    first, r = await rig.pay({"order_id": str(w.order_ids[0])})
    assert r.json()["outcome"] == "accepted", r.text
    _, r = await rig.pay({"order_id": str(w.order_ids[0])})
    assert r.json()["flag"] == "double_paid", r.text
    r = await rig.client.post("/mpesa/stkpush", json={"phone": PHONES[1], "amount": 1,
                                                      "target": {"order_id": str(w.order_ids[0])}}, headers=MERCHANT)
    assert (r.status_code, r.json()["error"]) == (409, "double_paid"), r.text
    es = w.contract("Escrow")
    amount = es.functions.orders(w.order_ids[1]).call()[2]
    w.w3.eth.wait_for_transaction_receipt(es.functions.fund(w.order_ids[1]).transact({"from": w.admin, "value": amount}))
    rig.index()
    _, r = await rig.pay({"order_id": str(w.order_ids[1])})
    assert r.json()["flag"] == "double_paid", r.text
    assert intents(rig) == [f"stripe:{first}"]
    rig.drain()
    assert [f["paymentRef"] for f in count_events(w.w3, es, "Funded") if f["paymentRef"]] == [first]


async def test_payment_waits_for_its_listing_to_be_indexed(rig):
    """A payment for a listing the indexer has not seen yet is recorded as pending (never written unchecked),
    decided once the indexer catches up; one that never appears is flagged after payment_pending_max_age_s."""
    from oracle.payments import recheck_pending

    w = rig.world
    cc, mk = w.contract("CarbonCredit"), w.contract("Marketplace")
    for call in (cc.functions.mint(w.admin, w.batch_id, 100, b"\x44" * 32), mk.functions.list(w.batch_id, 100, 3)):
        w.w3.eth.wait_for_transaction_receipt(call.transact({"from": w.admin}))
    fresh = mk.functions.listingCount().call()
    pi, r = await rig.pay(listing_target(rig, units=10, listing=fresh), amount=30)
    assert r.json()["outcome"] == "pending" and r.json()["intent"] is None, r.text
    ghost, r = await rig.pay(listing_target(rig, units=1, listing=999), amount=30)
    assert r.json()["outcome"] == "pending"
    assert recheck_pending(rig.pool, "local", rig.settings) == 0 and intents(rig) == []
    rig.index()
    assert recheck_pending(rig.pool, "local", rig.settings) == 1
    assert intents(rig) == [f"stripe:{pi}"]
    with rig.pool.connection() as c:
        c.execute("UPDATE oracle_provider_event SET received_at = now() - interval '2 days' WHERE payment_ref = %s",
                  (ghost,))
    assert recheck_pending(rig.pool, "local", rig.settings) == 1
    assert events(rig)[f"evt_{ghost[3:]}"] == ("flagged", "target_not_indexed")
    rig.drain()
    sold = count_events(w.w3, mk, "Sold")
    assert [(s["paymentRef"], s["amount"]) for s in sold] == [(pi, 10)]
    metrics = (await rig.client.get("/metrics")).text
    assert 'oracle_payment_events{flag="target_not_indexed",provider="stripe",status="flagged"} 1.0' in metrics


# ---- C: a listing is never oversold, a refused write never keeps the money silently ----------------------------
async def test_one_listing_paid_twice_beyond_its_remaining_credits(rig):
    """Two card payments of 60 credits each for a listing of 100: each fits what the indexer shows, together they do
    not. Accepted payments the indexer has not yet seen settled count against the listing's remaining credits, so
    the second is flagged target_unavailable (refund due) instead of being accepted and then reverting on chain;
    40 more still fit. Written on chain but not indexed yet, they still count."""
    listing = fresh_listing(rig, 100)
    first, r = await rig.pay(listing_target(rig, units=60, listing=listing), amount=60)
    assert r.json()["outcome"] == "accepted", r.text
    _, r = await rig.pay(listing_target(rig, units=60, listing=listing), amount=60)
    assert r.json()["flag"] == "target_unavailable", r.text
    third, r = await rig.pay(listing_target(rig, units=40, listing=listing), amount=40)
    assert r.json()["outcome"] == "accepted", r.text
    rig.drain()
    assert rig.status(f"stripe:{first}") == rig.status(f"stripe:{third}") == "confirmed"
    _, r = await rig.pay(listing_target(rig, units=1, listing=listing), amount=1)  # settled, not indexed yet
    assert r.json()["flag"] == "target_unavailable", r.text
    rig.index()
    _, r = await rig.pay(listing_target(rig, units=1, listing=listing), amount=1)  # sold out
    assert r.json()["flag"] == "target_unavailable", r.text
    assert rows(rig, "SELECT count(*) FROM oracle_intent WHERE status <> 'confirmed'") == [(0,)]
    sold = count_events(rig.world.w3, rig.world.contract("Marketplace"), "Sold")
    assert [(s["paymentRef"], s["amount"]) for s in sold if s["listingId"] == listing] == [(first, 60), (third, 40)]


async def test_two_oracles_racing_on_one_listing_never_oversell_it(rig, localstripe):
    """Two oracles get a payment of 60 credits each for one listing of 100 at the same moment. Payments are inserted
    while the test holds a table lock on oracle_payment (reads pass, inserts wait) until two sessions wait: without a
    per-listing lock both would have read 100 credits left and both be accepted; with it one waits for the other's
    decision. One accepted, one flagged target_unavailable, one write."""
    from psycopg_pool import ConnectionPool

    from oracle.app import OracleApp

    listing = fresh_listing(rig, 100)
    target = listing_target(rig, units=60, listing=listing)
    pis = [localstripe.payment_intent(target, amount=60)["id"] for _ in range(2)]
    pool_b = ConnectionPool(rig.url, min_size=1, max_size=4, open=True)
    client_b = httpx.AsyncClient(transport=httpx.ASGITransport(app=OracleApp(pool_b, rig.settings, "local").asgi()),
                                 base_url="http://oracle-b")
    results: list[dict] = []

    async def deliver(client: httpx.AsyncClient, pi: str) -> None:
        body, headers = signed(payment_event(pi, target, amount=60))
        r = await client.post("/webhooks/stripe", content=body, headers=headers)
        assert r.status_code == 200, r.text
        results.append(r.json())

    try:
        with rig.pool.connection() as gate:
            gate.execute("LOCK TABLE oracle_payment IN SHARE MODE")
            async with anyio.create_task_group() as tg:
                tg.start_soon(deliver, rig.client, pis[0])
                tg.start_soon(deliver, client_b, pis[1])
                try:
                    await until_blocked(rig, 2, "the two payments")
                finally:
                    gate.commit()  # also when the wait failed: the deliveries wait on the gate
    finally:
        await client_b.aclose()
        pool_b.close()
    assert sorted((r["outcome"], r["flag"]) for r in results) == [("accepted", None), ("flagged", "target_unavailable")]
    assert len(intents(rig)) == 1
    rig.drain()
    sold = count_events(rig.world.w3, rig.world.contract("Marketplace"), "Sold")
    assert [s["amount"] for s in sold if s["listingId"] == listing] == [60]


async def test_order_funded_on_chain_while_the_indexer_lags_ends_double_paid(rig, caplog):
    """The indexer still shows the order unpaid when a card payment for it arrives: accepted. The buyer funds it on
    chain meanwhile, in the block that also carries our write, which reverts. The card money is not kept silently:
    in the transaction that fails the intent, its payment and provider event are flagged double_paid (refund due),
    logged and counted like every other flag."""
    w = rig.world
    es = w.contract("Escrow")
    order = w.order_ids[1]
    pi, r = await rig.pay({"order_id": str(order)})
    assert r.json()["outcome"] == "accepted", r.text
    amount = es.functions.orders(order).call()[2]
    rig.anvil.rpc("evm_setAutomine", [False])
    try:
        rig.sender.run_once()  # our write passes its pre-check and goes out; then the buyer's fund, with a higher tip
        assert rig.status(f"stripe:{pi}") == "sent"
        fund = es.functions.fund(order).transact({"from": w.admin, "value": amount, "gas": 200_000,
                                                  "maxPriorityFeePerGas": 10**11, "maxFeePerGas": 10**12})
        rig.anvil.rpc("evm_mine", [])  # one block, the fund first
    finally:
        rig.anvil.rpc("evm_setAutomine", [True])
    assert w.w3.eth.get_transaction_receipt(fund)["status"] == 1
    rig.drain()
    view = await rig.intent(f"stripe:{pi}")
    assert view["status"] == "failed" and view["block_number"] and view["error"].startswith("InvalidStatus("), view
    assert rows(rig, "SELECT status, flag FROM oracle_payment") == [("flagged", "double_paid")]
    assert events(rig)[f"evt_{pi[3:]}"] == ("flagged", "double_paid")
    problem = rows(rig, "SELECT summary->>'problem' FROM oracle_provider_event")[0][0]
    assert "InvalidStatus(" in problem and "refund due" in problem
    flagged = [r for r in caplog.records if getattr(r, "flag", None) == "double_paid"]
    assert flagged and all(r.levelno == logging.WARNING for r in flagged)
    metrics = (await rig.client.get("/metrics")).text
    assert 'oracle_payment_events{flag="double_paid",provider="stripe",status="flagged"} 1.0' in metrics
    # the webhook delivered again gets the flag, and nothing is queued again
    r = await rig.post_event(payment_event(pi, {"order_id": str(order)}))
    assert (r.json()["outcome"], r.json()["flag"]) == ("flagged", "double_paid"), r.text
    assert intents(rig) == [f"stripe:{pi}"]


async def test_a_payment_whose_write_the_chain_refuses_is_flagged_write_failed(rig, sample):
    """An M-Pesa payment for a listing is accepted; the seller cancels the listing on chain before the write goes
    out (the indexer has not seen it). The pre-check refuses the write: intent failed and, in the same transaction,
    payment, provider event and STK request flagged write_failed (refund due). A redelivery gets the flag."""
    w = rig.world
    listing = fresh_listing(rig, 100)
    cid = await push(rig, listing_target(rig, units=10, listing=listing))
    r = await rig.client.post(PATH, json=callback(sample, cid, "WFAIL01"))
    assert r.json()["outcome"] == "accepted", r.text
    mk = w.contract("Marketplace")
    w.w3.eth.wait_for_transaction_receipt(mk.functions.cancel(listing).transact({"from": w.admin}))
    rig.drain()
    view = await rig.intent("mpesa:WFAIL01")
    assert view["status"] == "failed" and view["error"].startswith("ListingNotActive("), view
    assert rows(rig, "SELECT status, flag FROM oracle_payment") == [("flagged", "write_failed")]
    assert events(rig) == {f"{cid}:WFAIL01": ("flagged", "write_failed")}
    assert rows(rig, "SELECT status FROM oracle_mpesa_request") == [("flagged",)]
    r = await rig.client.post(PATH, json=callback(sample, cid, "WFAIL01"))
    assert (r.json()["outcome"], r.json()["flag"]) == ("flagged", "write_failed"), r.text
    metrics = (await rig.client.get("/metrics")).text
    assert 'oracle_payment_events{flag="write_failed",provider="mpesa",status="flagged"} 1.0' in metrics


# ---- D: bounded parsing ----------------------------------------------------------------------------------------
async def test_huge_numbers_from_providers_are_4xx_at_once(rig, daraja, sample):
    """Every number from a provider goes through a strict, length-capped parser: an Amount of "1e200000" (an int()
    of 200,000 digits before: 5.8 s here, 28 s in the report), a ResultCode of 4,301 zeros (a 500 before), a
    5,000-digit order id: a 4xx or a flagged event, each within two seconds of this process's CPU (the oracle runs in
    it; CPU time, not wall-clock time, so a loaded machine does not fail the test), nothing written."""
    cid = await push(rig, {"order_id": str(rig.world.order_ids[0])})
    bad = [callback(sample, "ws_CO_unknown", amount="1e200000"), callback(sample, cid, amount="1e200000"),
           callback(sample, cid, ResultCode="0" * 4301), callback(sample, cid, amount="9" * 5000),
           callback(sample, cid, amount=1e300), callback(sample, cid, amount=-1), callback(sample, cid, amount=True)]
    date = callback(sample, cid)
    date["Body"]["stkCallback"]["CallbackMetadata"]["Item"][3]["Value"] = "2" * 5000
    phone = callback(sample, cid)
    phone["Body"]["stkCallback"]["CallbackMetadata"]["Item"][4]["Value"] = "07xx-masked"
    for body in (*bad, date, phone):
        cpu = time.process_time()
        r = await rig.client.post(PATH, json=body)
        assert (r.status_code, r.json()["error"]) == (400, "invalid_callback"), r.text
        assert time.process_time() - cpu < 2.0
    r = await rig.client.post(PATH, content=b'{"Body": {"stkCallback": {"ResultCode": 1' + b"0" * 5000 + b"}}}",
                              headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    # Stripe: a signature timestamp of 5,000 digits, a 5,000-digit order id in the PaymentIntent's metadata
    body, headers = signed(payment_event("pi_x", {"order_id": "1"}))
    headers["stripe-signature"] = "t=" + "1" * 5000 + "," + headers["stripe-signature"].split(",", 1)[1]
    r = await rig.client.post("/webhooks/stripe", content=body, headers=headers)
    assert (r.status_code, r.json()["error"]) == (400, "bad_signature"), r.text
    cpu = time.process_time()  # localstripe's own work is in its process, not counted
    _, r = await rig.pay({"order_id": "9" * 5000})
    assert r.status_code == 200 and r.json()["flag"] == "invalid_metadata" and time.process_time() - cpu < 2.0, r.text
    assert intents(rig) == []
