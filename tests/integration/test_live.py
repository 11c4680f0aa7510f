"""Live subscriptions end to end: anvil (one block per transaction), the real indexer on a thread, the API under a
real uvicorn, graphql-transport-ws clients. Each test waits on conditions (messages, hub state), never on sleeps."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import orjson
import psycopg
import pytest
from web3 import Web3

from gqlapi.live import SLOW_CONSUMER, LiveClosed
from gqlapi.testing import LiveServer, WsClient
from indexer.runner import run_once
from store.engine import libpq_url
from tests.integration.scenario import deploy, settings_for
from tests.integration.test_indexer_reorg import Running

pytestmark = pytest.mark.anvil

ORDER_Q = """subscription($id: BigInt, $buyer: String, $since: SinceInput) {
  orderStatusChanged(orderId: $id, buyer: $buyer, since: $since) {
    __typename
    ... on OrderStatusChanged { orderId event block { number hash } }
    ... on Retracted { fromBlock toBlock }
  }
}"""
BLOCKS_Q = "subscription { blocks(chain: \"dev\") { __typename ... on BlockIndexed { block { number } _meta { block { number } } } } }"


@pytest.fixture()
def rig(anvil, db_url):
    """(w3, deployment, running indexer, live API server)."""
    w3 = Web3(Web3.HTTPProvider(anvil.url))
    dep = deploy(w3)
    run = Running(settings_for(anvil.url, dep, db_url, finality_depth=32, poll_interval_s=0.02), db_url)
    server = LiveServer(db_url, live_per_client=5000)
    try:
        run.wait_synced(w3)
        yield w3, dep, run, server
    finally:
        server.close()
        run.stop()


async def _until(cond, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def _order(w3, dep, buyer, seller, amount=10**15):
    es = dep.contract(w3, "Escrow")
    es.functions.createOrder(seller, amount, Web3.keccak(text=f"o{time.monotonic()}")).transact({"from": buyer})
    oid = es.functions.orderCount().call()
    es.functions.fund(oid).transact({"from": buyer, "value": amount})
    return es, oid


def test_escrow_status_sequence_with_a_reorg_retracting_shipped(rig, anvil):
    w3, dep, run, server = rig
    buyer, seller = w3.eth.accounts[1], w3.eth.accounts[2]

    async def main():
        c = await WsClient(server.ws_url).start()
        await c.subscribe("o", ORDER_Q, {"id": "1"})
        await _until(lambda: len(server.hub.subscribers) == 1)
        es, oid = await asyncio.to_thread(_order, w3, dep, buyer, seller)
        assert oid == 1
        got = [await c.next("o"), await c.next("o")]
        snap = anvil.rpc("evm_snapshot")
        await asyncio.to_thread(lambda: es.functions.markShipped(oid, b"\x01" * 32).transact({"from": seller}))
        shipped = await c.next("o")
        got.append(shipped)
        anvil.rpc("evm_revert", [snap])
        anvil.rpc("anvil_mine", ["0x3"])  # a longer branch without the shipment
        got.append(await c.next("o"))
        await asyncio.to_thread(lambda: es.functions.markShipped(oid, b"\x02" * 32).transact({"from": seller}))
        got.append(await c.next("o"))
        await c.close()
        return got

    got = asyncio.run(main())
    seq = [m["orderStatusChanged"] for m in got]
    assert [m["__typename"] for m in seq] == ["OrderStatusChanged"] * 3 + ["Retracted", "OrderStatusChanged"]
    assert [m.get("event") for m in seq] == ["OrderCreated", "Funded", "Shipped", None, "Shipped"], seq
    shipped_at = seq[2]["block"]["number"]
    assert seq[3]["fromBlock"] == shipped_at and seq[3]["toBlock"] >= shipped_at  # it retracts exactly the shipment
    assert seq[4]["block"]["number"] >= shipped_at and seq[4]["block"]["hash"] != seq[2]["block"]["hash"]
    assert all(s["orderId"] == "1" for s in seq if s["__typename"] == "OrderStatusChanged")


def test_resume_with_since_has_no_gap_and_no_duplicate(rig, db_url):
    """Orders keep being created while a client reads some messages, disconnects, and resumes with `since` (the
    last block it saw): what it received, in order, is exactly the database's order events, once each."""
    w3, dep, run, server = rig
    buyer, seller = w3.eth.accounts[3], w3.eth.accounts[4]
    stop = threading.Event()

    def traffic():
        es = dep.contract(w3, "Escrow")
        n = 0
        while not stop.is_set() and n < 40:
            es.functions.createOrder(seller, 1000, Web3.keccak(text=f"r{n}")).transact({"from": buyer})
            n += 1

    async def main():
        received = []
        c = await WsClient(server.ws_url).start()
        await c.subscribe("a", ORDER_Q, {"buyer": buyer})
        await _until(lambda: len(server.hub.subscribers) == 1)
        t = threading.Thread(target=traffic)
        t.start()
        for _ in range(8):
            received.append((await c.next("a"))["orderStatusChanged"])
        await c.close()
        await asyncio.sleep(0)  # the server notices the close; more orders are created meanwhile
        await _until(lambda: len(server.hub.subscribers) == 0)
        c = await WsClient(server.ws_url).start()
        await c.subscribe("b", ORDER_Q, {"buyer": buyer, "since": {"number": received[-1]["block"]["number"]}})
        await asyncio.to_thread(t.join)
        with psycopg.connect(libpq_url(db_url)) as conn:
            await _until(lambda: conn.execute("SELECT block_number FROM indexer_cursor").fetchone()[0]
                         >= w3.eth.block_number, 60)
            want = conn.execute(
                "SELECT e.order_id, e.block_number FROM order_event e JOIN escrow_order o ON o.chain = e.chain AND "
                "o.order_id = e.order_id AND o.valid_to IS NULL WHERE o.buyer = %s ORDER BY e.block_number, e.log_index",
                (buyer.lower(),)).fetchall()
        while len(received) < len(want):
            received.append((await c.next("b"))["orderStatusChanged"])
        with pytest.raises(asyncio.TimeoutError):  # and nothing more
            await c.next("b", timeout=0.5)
        await c.close()
        return received, want

    try:
        received, want = asyncio.run(main())
    finally:
        stop.set()
    assert len(want) == 40
    assert [(int(m["orderId"]), m["block"]["number"]) for m in received] == [(int(o), b) for o, b in want]


def test_many_subscribers_get_every_message_and_a_slow_one_is_dropped(rig):
    """N WebSocket subscribers (LIVE_SUBSCRIBERS, 200 by default) on one API process all receive every block; a
    subscriber that never drains its queue is disconnected (SLOW_CONSUMER) without stalling the others, and a
    WebSocket whose subscriber is dropped is closed with that code."""
    w3, dep, run, server = rig
    n = int(os.environ.get("LIVE_SUBSCRIBERS", "200"))
    blocks = 12
    hub = server.hub

    async def main():
        clients = []
        for i in range(0, n, 50):  # connect in waves: the accept queue stays small on a loaded machine
            clients += await asyncio.gather(*(WsClient(server.ws_url).start() for _ in range(min(50, n - i))))
        for i, c in enumerate(clients):
            await c.subscribe(f"s{i}", BLOCKS_Q)
        await _until(lambda: len(hub.subscribers) == n, 60)
        slow = hub.subscribe("slow-test-client")  # never read: its queue fills (queue size 256 > blocks, so shrink)
        slow.queue = asyncio.Queue(3)
        before = set(hub.subscribers)
        victim = await WsClient(server.ws_url).start()
        await victim.subscribe("v", BLOCKS_Q)
        await _until(lambda: len(hub.subscribers) == n + 2)
        (vsub,) = set(hub.subscribers) - before
        start = w3.eth.block_number
        await asyncio.to_thread(lambda: [w3.eth.send_transaction({"from": w3.eth.accounts[5], "to": w3.eth.accounts[6],
                                                                  "value": 1}) for _ in range(blocks)])
        seen = await asyncio.gather(*(_collect(c, f"s{i}", start + blocks) for i, c in enumerate(clients)))
        assert slow.closed is not None and slow.closed.code == SLOW_CONSUMER
        assert slow not in hub.subscribers
        # what the hub does to a slow subscriber's transport: close the WebSocket with the code and a reason
        vsub.close(LiveClosed(SLOW_CONSUMER, "slow consumer: test"))
        await _until(lambda: any(c.closed for c in [victim, *clients]), 10)
        closed = [c.closed for c in [victim, *clients] if c.closed]
        for c in [victim, *clients]:
            await c.close()
        return seen, closed

    seen, closed = asyncio.run(main())
    assert all(s == list(range(s[0], s[0] + len(s))) and s[-1] >= s[0] + blocks - 1 for s in seen)
    assert closed == [(SLOW_CONSUMER, "slow consumer: test")]
    assert hub.dropped >= 2


async def _collect(c, id, last):
    nums = []
    while not nums or nums[-1] < last:
        m = await c.next(id, timeout=60)
        assert m is not None and "blocks" in m, m
        nums.append(m["blocks"]["block"]["number"])
    return nums


def test_a_killed_indexer_restarting_does_not_replay_notices(anvil, db_url):
    """`carbonledger index` killed with SIGKILL while it backfills one-block ranges, then restarted (twice), and
    finally run to the head: every block is announced exactly once, in order (the notice commits with the block)."""
    import signal
    import subprocess
    import sys

    from tests.integration.scenario import index_env

    w3 = Web3(Web3.HTTPProvider(anvil.url))
    dep = deploy(w3)
    anvil.mine(60)
    listen = psycopg.connect(libpq_url(db_url), autocommit=True)
    listen.execute("LISTEN carbonledger_live")
    settings = settings_for(anvil.url, dep, db_url, finality_depth=2, max_block_range=1)
    notices = []

    def cursor():
        with psycopg.connect(libpq_url(db_url)) as conn:
            row = conn.execute("SELECT block_number FROM indexer_cursor").fetchone()
        return row[0] if row else -1

    proc = None
    try:
        for _ in range(2):
            before = cursor()
            proc = subprocess.Popen([sys.executable, "-m", "carbonledger.cli", "index", "--no-progress", "--port", "-1"],
                                    env=index_env(settings), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 120
            while cursor() < before + 5:  # killed mid-backfill, once it has committed a few ranges
                assert proc.poll() is None, f"the indexer exited {proc.returncode}"
                assert time.monotonic() < deadline, f"cursor at {cursor()}, waiting for {before + 5}"
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            notices.extend(orjson.loads(n.payload) for n in listen.notifies(timeout=0.3))
        assert run_once(settings, db_url=db_url) == 0
        head = w3.eth.block_number

        def covered() -> list[int]:
            return [b for n in notices if n["t"] == "block" for b in range(n["from"], n["to"] + 1)]

        deadline = time.monotonic() + 60  # every notice is committed; reading them may lag on a loaded box
        while not covered() or max(covered()) < head:
            assert time.monotonic() < deadline, f"notices up to {max(covered(), default=None)}, head {head}"
            notices.extend(orjson.loads(n.payload) for n in listen.notifies(timeout=0.5))
        notices.extend(orjson.loads(n.payload) for n in listen.notifies(timeout=0.5))  # any duplicate after it
        covered = covered()
        assert covered == list(range(covered[0], head + 1))  # each block once, in order, none missing
        assert all(n["t"] == "block" and int(n["xid"]) > 0 for n in notices)
        assert cursor() == head
    finally:
        if proc is not None and proc.poll() is None:  # a failed wait must not leave the indexer running
            proc.kill()
            proc.wait(10)
        listen.close()


def test_sse_stream_and_the_optional_token(anvil, db_url):
    """The same subscriptions as Server-Sent Events; with api.live_token set, a client without it is refused on
    both transports (SSE 401, WebSocket close 4403) and one with it is served."""
    import httpx

    w3 = Web3(Web3.HTTPProvider(anvil.url))
    dep = deploy(w3)
    run = Running(settings_for(anvil.url, dep, db_url, finality_depth=32, poll_interval_s=0.02), db_url)
    server = LiveServer(db_url, live_token="s3cret")
    try:
        run.wait_synced(w3)
        q = {"query": BLOCKS_Q}
        assert httpx.get(server.base + "/graphql/stream", params=q).status_code == 401
        bad = httpx.get(server.base + "/graphql/stream", params={"query": "subscription { nope }"},
                        headers={"authorization": "Bearer s3cret"})
        assert bad.status_code == 400 and bad.json()["errors"]

        async def main():
            from websockets.exceptions import ConnectionClosedError

            refused = WsClient(server.ws_url, {"token": "wrong"})
            with pytest.raises(ConnectionClosedError) as exc:
                await refused.start()
            assert exc.value.rcvd.code == 4403
            events = []
            async with httpx.AsyncClient(timeout=30) as http:
                async with http.stream("GET", server.base + "/graphql/stream", params=q,
                                       headers={"authorization": "Bearer s3cret"}) as r:
                    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
                    await _until(lambda: len(server.hub.subscribers) == 1)
                    start = w3.eth.block_number
                    await asyncio.to_thread(lambda: [w3.eth.send_transaction(
                        {"from": w3.eth.accounts[1], "to": w3.eth.accounts[2], "value": 1}) for _ in range(3)])
                    event = None
                    async for line in r.aiter_lines():
                        if line.startswith("event: "):
                            event = line[7:]
                        elif line.startswith("data: ") and event == "next":
                            events.append(orjson.loads(line[6:])["data"]["blocks"]["block"]["number"])
                            if events[-1] >= start + 3:
                                break
            return start, events

        start, events = asyncio.run(main())
        assert events == list(range(start + 1, start + 4))
    finally:
        server.close()
        run.stop()


def test_intent_status_changes_reach_their_subscriber(db_url):
    """The oracle_intent trigger (migration 0005) notifies every status change in its transaction; a subscriber
    gets the current status, then each transition, and nothing of other intents or of a rolled-back change."""
    # A subscription outlives a request's time budget; with a live token the transaction is shown too.
    server = LiveServer(db_url, request_timeout_ms=100, live_token="tok-payments")
    conn = psycopg.connect(libpq_url(db_url), autocommit=True)
    q = "subscription($k: String!) { intentStatusChanged(key: $k) { key status txHash blockNumber } }"

    def intent(key, status="pending"):
        conn.execute("INSERT INTO oracle_intent (idempotency_key, source, chain, contract, function, args, status, "
                     "already_on_chain) VALUES (%s, 'stripe', 'dev', 'Escrow', 'fund', '[]', %s, false)", (key, status))

    def status(key, st, **kw):
        conn.execute("UPDATE oracle_intent SET status = %s, tx_hash = %s, block_number = %s WHERE idempotency_key = %s",
                     (st, kw.get("tx"), kw.get("block"), key))

    async def main():
        intent("k1")
        anonymous = LiveServer(db_url)  # no token configured: anyone may subscribe, so status only
        a = await WsClient(anonymous.ws_url).start()
        await a.subscribe("i", q, {"k": "k1"})
        seen = await a.next("i")
        await a.close()
        anonymous.close()
        assert seen == {"intentStatusChanged": {"key": "k1", "status": "pending", "txHash": None, "blockNumber": None}}
        c = await WsClient(server.ws_url, {"token": "tok-payments"}).start()
        await c.subscribe("i", q, {"k": "k1"})
        got = [await c.next("i")]
        await _until(lambda: len(server.hub.subscribers) == 1)
        await asyncio.sleep(0.15)  # past api.request_timeout_ms: live messages have no request budget
        intent("k2")
        status("k2", "signed")
        with pytest.raises(RuntimeError):
            with conn.transaction():
                status("k1", "failed")
                raise RuntimeError("rolled back")
        status("k1", "signed")
        status("k1", "sent", tx="0x" + "ab" * 32)
        status("k1", "confirmed", tx="0x" + "ab" * 32, block=7)
        for _ in range(3):
            got.append(await c.next("i"))
        with pytest.raises(asyncio.TimeoutError):
            await c.next("i", timeout=0.3)
        await c.close()
        return [m["intentStatusChanged"] for m in got]

    try:
        got = asyncio.run(main())
    finally:
        conn.close()
        server.close()
    assert [(m["key"], m["status"], m["blockNumber"]) for m in got] == [
        ("k1", "pending", None), ("k1", "signed", None), ("k1", "sent", None), ("k1", "confirmed", 7)]


def test_every_worker_of_a_multi_worker_api_serves_live_messages(anvil, db_url):
    """`carbonledger serve --workers 2`: each worker process has its own listener; clients spread over the workers
    all get every block."""
    from gqlapi.testing import Served

    w3 = Web3(Web3.HTTPProvider(anvil.url))
    dep = deploy(w3)
    run = Running(settings_for(anvil.url, dep, db_url, finality_depth=32, poll_interval_s=0.02), db_url)
    api = Served(db_url, "--workers", "2")
    try:
        run.wait_synced(w3)
        api.wait_ready()
        url = api.base.replace("http://", "ws://") + "/graphql"

        async def main():
            clients = [await WsClient(url).start() for _ in range(8)]
            for c in clients:
                await c.subscribe("b", BLOCKS_Q)
            # graphql-transport-ws has no subscribe ack, and the workers are other processes: send blocks until
            # every client has had a message (then it is live), then let each catch up to the last one
            deadline = time.monotonic() + 60
            while True:
                await asyncio.to_thread(w3.eth.send_transaction, {"from": w3.eth.accounts[1], "to": w3.eth.accounts[2],
                                                                  "value": 1})
                head = w3.eth.block_number
                wait = time.monotonic() + 3
                while time.monotonic() < wait and any(c.inbox["b"].empty() for c in clients):
                    await asyncio.sleep(0.01)
                if not any(c.inbox["b"].empty() for c in clients):
                    break
                assert time.monotonic() < deadline, "not every client got a message"
            await asyncio.gather(*(_collect(c, "b", head) for c in clients))
            start = w3.eth.block_number
            await asyncio.to_thread(lambda: [w3.eth.send_transaction(
                {"from": w3.eth.accounts[1], "to": w3.eth.accounts[2], "value": 1}) for _ in range(3)])
            seen = await asyncio.gather(*(_collect(c, "b", start + 3) for c in clients))
            for c in clients:
                await c.close()
            return start, seen

        start, seen = asyncio.run(main())
        assert all(s == [start + 1, start + 2, start + 3] for s in seen), seen
    finally:
        api.close()
        run.stop()


def test_resume_from_a_block_a_reorg_replaced_is_refused(rig, anvil):
    """`since: {number, hash}` names the client's last block; after a reorg replaced it the resume is refused
    (SINCE_REORGED) rather than silently continued; the same block with its current hash resumes."""
    w3, dep, run, server = rig
    snap = anvil.rpc("evm_snapshot")
    w3.eth.send_transaction({"from": w3.eth.accounts[1], "to": w3.eth.accounts[2], "value": 1})
    run.wait_synced(w3)
    old = w3.eth.get_block("latest")
    anvil.rpc("evm_revert", [snap])
    anvil.rpc("anvil_mine", ["0x2"])
    run.wait_synced(w3)
    new = w3.eth.get_block(old.number)

    async def main():
        c = await WsClient(server.ws_url).start()
        q = "subscription($s: SinceInput) { blocks(chain: \"dev\", since: $s) { __typename } }"
        await c.subscribe("old", q, {"s": {"number": old.number, "hash": old.hash.to_0x_hex()}})
        refused = await c.next("old")
        await c.subscribe("new", q, {"s": {"number": old.number, "hash": new.hash.to_0x_hex()}})
        resumed = await c.next("new")
        await c.close()
        return refused, resumed

    refused, resumed = asyncio.run(main())
    assert refused["type"] in ("next", "error"), refused
    errors = refused["payload"]["errors"] if refused["type"] == "next" else refused["payload"]
    assert errors[0]["extensions"]["code"] == "SINCE_REORGED", errors
    assert resumed == {"blocks": {"__typename": "BlockIndexed"}}


def test_the_replay_limit_counts_the_subscribers_own_messages(anvil, db_url):
    """api.live_max_replay bounds what one resuming subscription is sent; the rows of other orders, buyers or
    batches above `since` do not count (they did: a subscriber with two messages to catch up on was refused because
    others had many). A subscription whose own backlog is over the limit is still refused, saying so."""
    w3 = Web3(Web3.HTTPProvider(anvil.url))
    dep = deploy(w3)
    run = Running(settings_for(anvil.url, dep, db_url, finality_depth=32, poll_interval_s=0.02), db_url)
    server = LiveServer(db_url, live_per_client=50, live_max_replay=3)
    try:
        first, other, seller = w3.eth.accounts[1], w3.eth.accounts[4], w3.eth.accounts[2]
        _, mine = _order(w3, dep, first, seller)  # OrderCreated + Funded: 2 messages
        for _ in range(3):
            _order(w3, dep, other, seller)  # 6 more rows above block 0, none of them order `mine`
        run.wait_synced(w3)

        async def main():
            c = await WsClient(server.ws_url).start()
            await c.subscribe("mine", ORDER_Q, {"id": str(mine), "since": {"number": 0}})
            got = [await c.next("mine"), await c.next("mine")]
            await c.subscribe("theirs", ORDER_Q, {"buyer": other, "since": {"number": 0}})
            refused = await c.next("theirs")
            await c.close()
            return got, refused

        got, refused = asyncio.run(main())
        assert [m["orderStatusChanged"]["event"] for m in got] == ["OrderCreated", "Funded"], got
        assert {int(m["orderStatusChanged"]["orderId"]) for m in got} == {mine}
        errors = refused["payload"]["errors"] if refused["type"] == "next" else refused["payload"]
        assert "more than 3 messages since block 0" in errors[0]["message"], refused
    finally:
        server.close()
        run.stop()


def test_limits_and_bad_arguments_are_clear_errors(db_url):
    """Per connection (api.live_per_connection), per client (api.live_per_client), arguments: each refusal is an
    error message on that operation; the connection and the other subscriptions carry on."""
    server = LiveServer(db_url, live_per_connection=2, live_per_client=2)
    intent = "subscription($k: String!) { intentStatusChanged(key: $k) { status } }"

    async def main():
        out = {}
        e = await WsClient(server.ws_url).start()
        await e.subscribe("bad1", "subscription { orderStatusChanged { __typename } }")
        out["bad1"] = await e.next("bad1")
        await e.subscribe("bad2", "subscription { portfolioChanged(owner: \"nope\") { __typename } }")
        out["bad2"] = await e.next("bad2")
        await e.subscribe("bad3", BLOCKS_Q.replace("blocks(chain: \"dev\")", "blocks(since: {number: -1})"))
        out["bad3"] = await e.next("bad3")
        c = await WsClient(server.ws_url).start()
        for k in ("a", "b"):  # two running operations: connection c is at its limit
            await c.subscribe(k, intent, {"k": k})
        await c.subscribe("c3", intent, {"k": "c3"})
        out["per_connection"] = await c.next("c3")
        await _until(lambda: len(server.hub.subscribers) == 2)
        d = await WsClient(server.ws_url).start()  # the same client (127.0.0.1) on another connection
        await d.subscribe("c", intent, {"k": "c"})
        out["per_client"] = await d.next("c")
        for x in (c, d, e):
            await x.close()
        return out

    try:
        out = asyncio.run(main())
    finally:
        server.close()

    def message(m):
        errors = m["payload"]["errors"] if m["type"] == "next" else m["payload"]
        return errors[0]["message"]

    assert "needs orderId, buyer or seller" in message(out["bad1"])
    assert "owner" in message(out["bad2"])
    assert "since.number must be ≥ 0" in message(out["bad3"])
    assert "2 live subscriptions, the limit per client" in message(out["per_client"])
    assert message(out["per_connection"]) == "Subscription limit reached"


def test_graphiql_runs_a_subscription_in_a_real_browser(db_url, tmp_path):
    """Headless Chromium (Debian's chromium + chromium-driver, installed by .ci/run) opens GraphiQL with a
    subscription and runs it: GraphiQL's fetcher speaks graphql-transport-ws to /graphql and shows each message."""
    from urllib.parse import quote

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.browser import chromium

    server = LiveServer(db_url)
    conn = psycopg.connect(libpq_url(db_url), autocommit=True)
    conn.execute("INSERT INTO oracle_intent (idempotency_key, source, chain, contract, function, args, status, "
                 "already_on_chain) VALUES ('pay-1', 'stripe', 'dev', 'Escrow', 'fund', '[]', 'pending', false)")
    query = 'subscription { intentStatusChanged(key: "pay-1") { key status blockNumber } }'
    try:
        with chromium(tmp_path / "chromium-profile") as browser:
            browser.get(f"{server.base}/graphql?q={quote(query)}")
            wait = WebDriverWait(browser, 30)
            wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, ".graphiql-execute-button"))).click()
            wait.until(lambda b: '"pending"' in b.find_element(By.CSS_SELECTOR, ".graphiql-response").text)
            conn.execute("UPDATE oracle_intent SET status = 'confirmed', block_number = 42 WHERE idempotency_key = 'pay-1'")
            wait.until(lambda b: '"confirmed"' in b.find_element(By.CSS_SELECTOR, ".graphiql-response").text)
            text = browser.find_element(By.CSS_SELECTOR, ".graphiql-response").text
            assert '"status": "confirmed"' in text and '"blockNumber": null' in text, text  # no token: status only
    finally:
        conn.close()
        server.close()


def test_a_websocket_client_that_stops_reading_is_closed_with_4420(db_url):
    """A real slow consumer: a WebSocket client that stops reading. Once the socket buffers are full the server's
    sends wait, its subscription's queue (api.live_queue) fills, and the hub drops it: the socket is closed with
    4420 and a reason, while a reading client on the same process gets every message. (Notices are sent with
    pg_notify directly, ~4 KB messages each, so that the socket buffers, ~2.5 MB here, fill in a few hundred.)"""
    from websockets.asyncio.client import connect

    server = LiveServer(db_url, live_queue=32)
    hub = server.hub
    q = 'subscription { blocks(chain: "dev") { ... on BlockIndexed { block { number } kinds } } }'
    n = 800
    kinds = [f"table_{i:04d}_{'x' * 12}" for i in range(180)]

    def flood(conn, a, z):
        for b in range(a, z + 1):
            conn.execute("SELECT pg_notify('carbonledger_live', %s)", (orjson.dumps(
                {"t": "block", "chain": "dev", "from": b, "to": b, "hash": "0x01", "kinds": kinds,
                 "xid": "1"}).decode(),))

    async def main():
        fast = await WsClient(server.ws_url).start()
        await fast.subscribe("f", q)
        import socket

        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a fixed small window: no autotuning to 32 MB
        sock.connect(("127.0.0.1", server.port))
        # no permessage-deflate: these messages would compress a hundredfold and take that much longer to fill buffers
        slow = await connect(server.ws_url, sock=sock, subprotocols=["graphql-transport-ws"], max_queue=1,
                             compression=None)
        await slow.send('{"type": "connection_init"}')
        assert orjson.loads(await slow.recv())["type"] == "connection_ack"
        await slow.send(orjson.dumps({"id": "s", "type": "subscribe", "payload": {"query": q}}).decode())
        await _until(lambda: len(hub.subscribers) == 2)
        got = []
        with psycopg.connect(libpq_url(db_url), autocommit=True) as conn:
            for a in range(1, n + 1, 20):  # bursts of 20 (< live_queue) which the reading client keeps up with
                await asyncio.to_thread(flood, conn, a, min(n, a + 19))
                got += await _collect(fast, "f", min(n, a + 19))
        await _until(lambda: hub.dropped == 1, 60)
        with pytest.raises(Exception):  # now read what was buffered, then the close
            while True:
                await asyncio.wait_for(slow.recv(), 30)
        closed = slow.protocol.close_rcvd
        await fast.close()
        return got, closed

    try:
        got, closed = asyncio.run(main())
    finally:
        server.close()
    assert got == list(range(1, n + 1))
    assert closed is not None and closed.code == SLOW_CONSUMER and closed.reason.startswith("slow consumer"), closed


AUCTION_Q = """subscription($id: BigInt) {
  auctionChanged(auctionId: $id) {
    __typename
    ... on AuctionChanged { auctionId status bidCount highestPricePerUnit winner endsAt block { number } }
  }
}"""
TRADE_Q = """subscription { tradeExecuted { __typename ... on TradeExecuted { auctionId listingId amount pricePerUnit } } }"""


def test_auction_bids_and_settlement_reach_their_subscribers(rig, anvil):
    """An auction's life on `auctionChanged` (created, each bid, settled with its winner) and its settlement on
    `tradeExecuted` as an auction trade (auctionId set, listingId null)."""
    w3, dep, run, server = rig
    cc, au = dep.contract(w3, "CarbonCredit"), dep.contract(w3, "Auction")
    admin, seller, alice, bob = w3.eth.accounts[0], w3.eth.accounts[5], w3.eth.accounts[6], w3.eth.accounts[7]

    def tx(call, sender, value=0):
        r = w3.eth.wait_for_transaction_receipt(call.transact({"from": sender, "value": value}), timeout=120)
        assert r["status"] == 1

    def story():
        tx(cc.functions.createBatch("PRJ-A", 2024, "M", "R", "S", b"\x09" * 32), admin)
        batch = cc.functions.batchCount().call()
        tx(cc.functions.mint(seller, batch, 10, b"\x0a" * 32), admin)
        tx(cc.functions.setApprovalForAll(au.address, True), seller)
        end = w3.eth.get_block("latest").timestamp + 3600
        tx(au.functions.create(batch, 10, 5, 1, end), seller)
        tx(au.functions.bid(1, 5), alice, 50)
        tx(au.functions.bid(1, 7), bob, 70)
        anvil.rpc("evm_setNextBlockTimestamp", [end + 1])
        anvil.rpc("anvil_mine", ["0x1"])  # the end is in the past for the settle's gas estimate too
        tx(au.functions.settle(1), alice)

    async def main():
        c = await WsClient(server.ws_url).start()
        await c.subscribe("a", AUCTION_Q, {"id": "1"})
        await c.subscribe("t", TRADE_Q, {})
        await _until(lambda: len(server.hub.subscribers) == 2)
        await asyncio.to_thread(story)
        got = [await c.next("a") for _ in range(4)]
        trade = await c.next("t")
        await c.close()
        return got, trade

    got, trade = asyncio.run(main())
    seq = [m["auctionChanged"] for m in got]
    assert [(m["status"], m["bidCount"], m["highestPricePerUnit"]) for m in seq] == [
        ("active", 0, None), ("active", 1, "5"), ("active", 2, "7"), ("settled", 2, "7")]
    assert seq[-1]["winner"].lower() == bob.lower() and seq[0]["block"]["number"] < seq[-1]["block"]["number"]
    assert trade["tradeExecuted"] == {"__typename": "TradeExecuted", "auctionId": "1", "listingId": None,
                                      "amount": "10", "pricePerUnit": "7"}


def test_no_subscription_opens_while_the_listener_is_reconnecting(db_url):
    """While the API process has lost its LISTEN connection, a notice committed now would reach nobody: a new
    subscription is refused (resume with `since` shortly) instead of opened with a silent gap; once the listener is
    back, subscriptions open again."""
    server = LiveServer(db_url)
    conn = psycopg.connect(libpq_url(db_url), autocommit=True)
    q = "subscription($k: String!) { intentStatusChanged(key: $k) { key status } }"

    async def main():
        assert server.hub.connected.is_set()
        server.hub.connected.clear()  # as _run does when its connection drops, before it reconnects
        c = await WsClient(server.ws_url).start()
        await c.subscribe("i", q, {"k": "k1"})
        refused = await c.next("i")
        server.hub.connected.set()
        await c.subscribe("j", q, {"k": "k1"})
        conn.execute("INSERT INTO oracle_intent (idempotency_key, source, chain, contract, function, args, status, "
                     "already_on_chain) VALUES ('k1', 'stripe', 'dev', 'Escrow', 'fund', '[]', 'pending', false)")
        ok = await c.next("j")
        await c.close()
        return refused, ok

    try:
        refused, ok = asyncio.run(main())
    finally:
        server.close()
        conn.close()
    assert "reconnecting to its database listener" in str(refused), refused
    assert ok == {"intentStatusChanged": {"key": "k1", "status": "pending"}}


def test_queries_on_one_websocket_each_read_a_fresh_snapshot(db_url):
    """A WebSocket connection is not one request: each of its operations reads its own snapshot with its own
    DataLoaders, so a second query on the connection is answered (not "the request has ended") and sees what was
    committed between the two, while a subscription on the same connection carries on."""
    server = LiveServer(db_url)
    meta = "{ _meta { chain block { number } } }"

    def cursor(n: int) -> None:
        with psycopg.connect(libpq_url(db_url), autocommit=True) as c:
            c.execute("INSERT INTO indexer_cursor (chain, block_number, block_hash, finalized_number) "
                      "VALUES ('ws', %s, %s, 0) ON CONFLICT (chain) DO UPDATE SET block_number = EXCLUDED.block_number, "
                      "block_hash = EXCLUDED.block_hash", (n, "0x" + f"{n:064x}"))

    async def main():
        c = await WsClient(server.ws_url).start()
        await c.subscribe("live", BLOCKS_Q)  # stays open across the queries below
        cursor(7)
        await c.subscribe("q1", meta)
        first = await c.next("q1")
        cursor(9)
        await c.subscribe("q2", meta)
        second = await c.next("q2")
        await c.subscribe("q3", meta)  # and once more, with nothing changed
        third = await c.next("q3")
        assert "live" not in {k for k, q in c.inbox.items() if not q.empty()}  # no message, no error on it
        await c.close()
        return first, second, third

    try:
        first, second, third = asyncio.run(main())
    finally:
        server.close()

    def block(m):
        assert "_meta" in m, m  # data, not an error message
        return [x["block"]["number"] for x in m["_meta"] if x["chain"] == "ws"]

    assert block(first) == [7] and block(second) == [9] and block(third) == [9]
