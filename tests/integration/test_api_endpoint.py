"""The lean POST /graphql path answers exactly as strawberry's view does, and keeps prepared statements."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest

from gqlapi.testing import ApiClient, World, addr

A, B = addr(1), addr(2)

FOLIO = 'query($o: String!) { portfolio(owner: $o) { totals { balance value } holdings { batchId tradable batch { projectId } } } }'
CASES = [
    # valid documents: the lean path executes them
    (FOLIO, {"o": A}, None),
    ("{ certificates(first: 2) { pageInfo { hasNextPage endCursor } nodes { id amount provenance { kind amount } } } }", None, None),
    ("query Q1 { _meta { chain } } query Q2 { marketStats(batchId: \"1\") { tradeCount volume floor } }", None, "Q2"),
    ("{ provenance(batchId: \"1\", owner: \"%s\") { events { kind amount } truncated } }" % B, None, None),
    # valid documents whose execution fails: a client error and a variable that does not coerce
    (FOLIO, {"o": "0xnothex"}, None),
    (FOLIO, {"o": 7}, None),
    ("{ trades(first: 100000) { nodes { buyer } } }", None, None),
    # anything the lean path leaves to strawberry
    ("{ nope }", None, None),
    ("{ portfolio(owner: \"x\") { holdings { ", None, None),
    ("query A { _meta { chain } } query B { _meta { chain } }", None, None),
    ("query A { _meta { chain } }", None, "Missing"),
    ("mutation { x }", None, None),
]


@pytest.fixture()
def setup(db_url):
    w = World(db_url)
    for b in range(1, 5):
        w.create_batch(b)
        w.mint(A, b, 100 * b)
        w.retire(A, b, b)
    w.transfer(A, B, 1, 10)
    api = ApiClient(db_url, max_page_size=100)
    yield w, api
    api.close()
    w.close()


def _both(api: ApiClient, body: bytes) -> tuple[httpx.Response, httpx.Response]:
    endpoint = api.app.state.graphql
    strawberry_only = httpx.AsyncClient(transport=httpx.ASGITransport(app=endpoint.fallback), base_url="http://api")
    headers = {"content-type": "application/json"}
    try:
        lean = api.loop.run_until_complete(api.http.post("/graphql", content=body, headers=headers))
        plain = api.loop.run_until_complete(strawberry_only.post("/graphql", content=body, headers=headers))
    finally:
        api.loop.run_until_complete(strawberry_only.aclose())
    return lean, plain


@pytest.mark.parametrize("query, variables, op", CASES)
def test_lean_path_answers_like_strawberry(setup, query, variables, op):
    w, api = setup
    body = orjson.dumps({"query": query, "variables": variables, "operationName": op})
    for _ in range(2):  # the first request prepares the document, the second finds it prepared
        lean, plain = _both(api, body)
        assert lean.status_code == plain.status_code, (lean.text, plain.text)
        assert lean.status_code < 500
        assert lean.headers["content-type"] == plain.headers["content-type"]
        assert lean.content == plain.content or lean.json() == plain.json()
    prepared = api.app.state.graphql.prepared.get((query, op))
    valid = CASES.index((query, variables, op)) < 7
    assert (prepared is not None) == valid


def test_masked_errors_and_limits_on_the_lean_path(setup):
    w, api = setup
    q = "{ trades { nodes { buyer } } }"
    assert api.q(q) == {"trades": {"nodes": []}}
    w.conn.execute("ALTER TABLE trade RENAME TO trade_gone")
    try:  # another question: the answer to `q` is kept for this state (no indexer commit renames a table)
        lean, plain = _both(api, orjson.dumps({"query": "{ trades(first: 7) { nodes { buyer } } }"}))
        assert lean.status_code == plain.status_code == 200
        assert lean.json() == plain.json() and lean.json()["errors"][0]["message"] == "Unexpected error."
    finally:
        w.conn.execute("ALTER TABLE trade_gone RENAME TO trade")
    huge = orjson.dumps({"query": q, "variables": {"pad": "x" * 2_000_000}})
    before = api.db.statements
    r = api.loop.run_until_complete(api.http.post("/graphql", content=huge, headers={"content-type": "application/json"}))
    assert r.status_code == 413 and "too large" in r.json()["errors"][0]["message"]
    assert r.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    assert api.db.statements == before


def test_prepared_statements_survive_requests_and_dead_connections_are_replaced(setup):
    w, api = setup
    for _ in range(8):
        api.q(FOLIO, {"o": A})
    count = "{ portfolio(owner: \"%s\") { owner } }" % A
    api.q(count)

    async def prepared_in_the_pool() -> int:
        """Statements prepared on the pool's connections, all of them: which connection served which request
        depends on when background renewals (COMMIT; BEGIN) end, so no single one is sure to hold them."""
        pool = api.db.primary
        await asyncio.gather(*list(pool._renewing))  # every connection back in the pool
        sessions = [pool.session() for _ in range(len(pool._idle))]
        try:  # held open together: each borrows a different connection
            counts = [(await s.fetch("SELECT count(*) AS n FROM pg_prepared_statements"))[0]["n"] for s in sessions]
        finally:
            for s in sessions:
                await s.close()
        return sum(counts)

    assert api.loop.run_until_complete(prepared_in_the_pool()) >= 1
    # Kill every API connection while they wait in the pool: the next requests reconnect transparently.
    w.conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'carbonledger-api'")
    for _ in range(3):
        assert api.q(FOLIO, {"o": A})["portfolio"]["holdings"]


def test_numeric_columns_come_back_as_ints(setup):
    w, api = setup

    async def go():
        s = api.db.session()
        try:
            return (await s.fetch("SELECT (10::numeric ^ 70)::numeric(78,0) AS big, 1.5::numeric AS frac, NULL::numeric AS n"))[0]
        finally:
            await s.close()

    row = api.loop.run_until_complete(go())
    assert row["big"] == 10 ** 70 and type(row["big"]) is int
    assert str(row["frac"]) == "1.5" and row["n"] is None


def _connection_outside_a_transaction_waits(api: ApiClient) -> None:
    """Make the pool hold a connection outside a transaction, so the next single-statement request takes it (with
    only connections inside a snapshot waiting, it would take one of those and may run several statements there,
    correctly but without showing the re-run; which kind waits depends on background renewals' timing)."""
    async def go() -> None:
        pool = api.db.primary
        conn = await pool.acquire(in_transaction=False)
        pool.release(conn, in_transaction=False)
        while pool._renewing:
            await __import__("asyncio").gather(*pool._renewing)

    api.loop.run_until_complete(go())


def test_single_statement_documents_skip_the_transaction_until_they_need_one(setup):
    """A document seen to run one statement runs without a snapshot; when a later request of it needs a second
    statement (here: the page has certificates, so their batches are loaded too), it is re-run with a snapshot."""
    w, api = setup
    endpoint = api.app.state.graphql
    endpoint.answers = None  # the uncached path (cacheable documents run in a snapshot that first reads the state)
    q = "query($b: BigInt) { certificates(where: {batchId: $b}) { nodes { id amount batch { projectId } } } }"
    assert api.q(q, {"b": "999"}) == {"certificates": {"nodes": []}}
    prepared = endpoint.prepared[(q, None)]
    assert prepared.single is True
    _connection_outside_a_transaction_waits(api)
    before = api.db.statements
    d = api.q(q, {"b": "1"})
    assert d["certificates"]["nodes"] == [{"id": "1", "amount": "1", "batch": {"projectId": "PRJ-1"}}]
    assert prepared.single is False
    assert api.db.statements - before == 3  # the dropped single-statement attempt ran one, the re-run two
    before = api.db.statements
    assert api.q(q, {"b": "2"})["certificates"]["nodes"][0]["batch"] == {"projectId": "PRJ-1"}
    assert api.db.statements - before == 2

    # A certificate with its batch (and provenance) is one statement whatever the data (certificate_bundle_sql).
    one = "query($id: BigInt!) { certificate(id: $id) { id batch { projectId } provenance { kind } } }"
    assert api.q(one, {"id": "999"}) == {"certificate": None}
    before = api.db.statements
    assert api.q(one, {"id": "2"})["certificate"]["batch"] == {"projectId": "PRJ-1"}
    assert endpoint.prepared[(one, None)].single is True and api.db.statements - before == 1

    folio = '{ portfolio(owner: "%s") { holdings { batchId } } }' % A
    for _ in range(3):
        assert len(api.q(folio)["portfolio"]["holdings"]) == 4
    assert endpoint.prepared[(folio, None)].single is True

    async def kinds() -> list[bool]:
        return [c.info.transaction_status == 0 for c in api.db.primary._idle]

    api.loop.run_until_complete(__import__("asyncio").sleep(0.05))
    assert any(api.loop.run_until_complete(kinds()))  # a connection waits outside a transaction for such requests


def test_body_cap_applies_to_every_post_and_sessions_refuse_work_after_close(setup):
    w, api = setup
    huge = b'{"query": "{ _meta { chain } }", "pad": "' + b"x" * 1_100_000 + b'"}'
    for ctype, accept in (("application/json", "application/graphql-response+json"), ("application/graphql", "*/*"),
                          ("text/plain", "*/*")):
        r = api.loop.run_until_complete(api.http.post("/graphql", content=huge, headers={"content-type": ctype, "accept": accept}))
        assert r.status_code == 413, (ctype, r.status_code)

    async def after_close() -> tuple[int, int]:
        s = api.db.session()
        await s.fetch("SELECT 1")
        await s.close()
        with pytest.raises(Exception, match="the request has ended"):
            await s.fetch("SELECT 2")
        await __import__("asyncio").sleep(0.05)
        return api.db.primary._size, len(api.db.primary._idle)

    size, idle = api.loop.run_until_complete(after_close())
    assert size == idle  # nothing is held by the closed session


def test_market_window_ends_at_the_statement_time_not_when_the_connection_was_pooled(setup):
    """Transactions begin when a connection goes back to the pool, so the window end must not use now()."""
    import time

    w, api = setup
    q = '{ marketStats(batchId: "1", window: HOUR) { end } _meta { chain } }'  # two statements: a snapshot
    api.q(q)
    assert api.app.state.graphql.prepared[(q, None)].single is False
    time.sleep(2.2)  # the connection waits in the pool, inside its next transaction
    for _ in range(3):
        assert api.q(q)["marketStats"]["end"] >= int(time.time()) - 1
        time.sleep(1.1)


@pytest.mark.parametrize("generic", [True, False])
def test_generic_plans_setting_reaches_the_connections(db_url, generic):
    api = ApiClient(db_url, generic_plans=generic)
    try:
        async def mode() -> str:
            s = api.db.session()
            try:
                return (await s.fetch("SELECT current_setting('plan_cache_mode') AS m"))[0]["m"]
            finally:
                await s.close()

        assert api.loop.run_until_complete(mode()) == ("force_generic_plan" if generic else "auto")
    finally:
        api.close()


def test_pool_under_contention_shares_its_connections_and_times_out_cleanly(db_url):
    import asyncio

    from gqlapi.db import Database, PoolTimeout

    async def go() -> None:
        db = Database(db_url, max_size=2)
        await db.open()
        try:
            seen: list[int] = []

            async def one(i: int) -> int:
                s = db.session(single=i % 2 == 0)
                try:
                    rows = await s.fetch("SELECT pg_sleep(0.02), %s::int AS i", (i,))
                    seen.append(db._size)
                    return rows[0]["i"]
                finally:
                    await s.close()

            assert sorted(await asyncio.gather(*(one(i) for i in range(12)))) == list(range(12))
            assert max(seen) <= 2
            held = [await db.acquire(), await db.acquire()]
            with pytest.raises(PoolTimeout):
                await db.acquire(timeout=0.2)
            for c in held:
                db.release(c)
            await asyncio.sleep(0.1)
            again = await db.acquire(timeout=1)  # a released connection is handed out again
            db.release(again)
        finally:
            await db.close()
        assert db._size == 0

    asyncio.run(go())
