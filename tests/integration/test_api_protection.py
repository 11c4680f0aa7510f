"""Bad queries get clear GraphQL errors (never a 500), internals stay hidden, no N+1, ops routes, reorgs."""

from __future__ import annotations

import asyncio

import pytest

from gqlapi.testing import ApiClient, World, addr

A, B = addr(1), addr(2)


@pytest.fixture()
def setup(db_url):
    w = World(db_url)
    for b in range(1, 13):
        w.create_batch(b, project=f"P{b % 3}")
        w.mint(A, b, 100 * b)
        w.retire(A, b, b)
    w.transfer(A, B, 1, 10)
    api = ApiClient(db_url, max_depth=8, max_aliases=5, max_tokens=400, max_page_size=100)
    yield w, api
    api.close()
    w.close()


def _no_internals(text: str) -> None:
    for leak in ("Traceback", "SELECT", "psycopg", "File \"", "relation"):
        assert leak not in text, text


@pytest.mark.parametrize("query, expect", [
    ("{ portfolio(owner: \"%s\") { holdings { batch { chain } } certificates { batch { chain } provenance { kind } } } }" % A, None),
    ("{ certificates { nodes { batch { chain } } } a1: _meta { chain } a2: _meta { chain } a3: _meta { chain } "
     "a4: _meta { chain } a5: _meta { chain } a6: _meta { chain } }", "aliases"),
    ("{ nope }", "Cannot query field 'nope'"),
    ("{ trades(first: 100000) { nodes { buyer } } }", "first must be ≤ 100 (the maximum page size); got 100000"),
    ("{ trades(first: -1) { nodes { buyer } } }", "first must be ≥ 0"),
    ("{ trades(after: \"%%%%\") { nodes { buyer } } }", "after: malformed cursor"),
    ("{ listings(after: \"WyJYIiwgW11d\") { nodes { seller } } }", "after: malformed cursor"),
    ("{ portfolio(owner: \"0xnothex\") { owner } }", "owner: not a 0x-prefixed 20-byte hex address"),
    ("{ certificate(id: \"1.5\") { id } }", "BigInt: expected a decimal string"),
    ("{ certificate(id: 12) { id } }", None),
    ("{ trades { nodes { buyer } ", "Syntax Error"),
    ("{ candles(batchId: \"1\", from: 10, to: 5) { start } }", "`to` must be after `from`"),
])
def test_bad_queries_are_clear_errors(setup, query, expect):
    w, api = setup
    r = api.post(query)
    assert r.status_code in (200, 400), r.text
    _no_internals(r.text)
    if expect is None:
        assert "errors" not in r.json() or not r.json()["errors"], r.text
    else:
        assert any(expect in e["message"] for e in r.json()["errors"]), r.text


def test_depth_and_token_limits(setup):
    w, api = setup
    from core.config import ApiSettings

    ok = "{ certificates { edges { node { batch { chain } } } } }"
    assert api.q(ok)
    msgs = _run_with_limits(api, ApiSettings(max_depth=3), ok)
    assert any("exceeds maximum operation depth of 3" in m for m in msgs), msgs
    via_fragments = ("query { certificates { edges { node { ...C } } } } fragment C on Certificate { batch { ...B } } "
                     "fragment B on CreditBatch { chain }")
    assert any("depth" in m for m in _run_with_limits(api, ApiSettings(max_depth=3), via_fragments))
    long_query = "{ " + " ".join("_meta { chain }" for _ in range(200)) + " }"
    msgs = api.errors(long_query)
    assert any("token" in m.lower() for m in msgs), msgs


def _run_with_limits(api: ApiClient, settings, query: str) -> list[str]:
    from gqlapi.context import Context, Limits
    from gqlapi.schema import make_schema

    schema = make_schema(settings)
    res = api.loop.run_until_complete(schema.execute(query, context_value=Context.create(api.db, Limits())))
    return [e.message for e in res.errors or []]


def test_unexpected_errors_are_masked(setup):
    w, api = setup
    w.conn.execute("ALTER TABLE trade RENAME TO trade_gone")
    r = api.post("{ trades { nodes { buyer } } }")
    assert r.status_code == 200
    assert r.json()["errors"][0]["message"] == "Unexpected error."
    _no_internals(r.text)
    w.conn.execute("ALTER TABLE trade_gone RENAME TO trade")
    assert api.q("{ trades { nodes { buyer } } }")  # the pool recovered


def test_statement_timeout_is_a_clear_error(db_url):
    from gqlapi.db import Database
    from gqlapi.errors import UserError

    async def go():
        db = Database(db_url, statement_timeout_ms=100)
        await db.open()
        s = db.session()
        try:
            with pytest.raises(UserError, match="statement timeout \\(100 ms\\)"):
                await s.fetch("SELECT pg_sleep(2)")
        finally:
            await s.close()
            await db.close()

    asyncio.run(go())


def test_nested_query_has_no_n_plus_one(setup):
    """SQL statements per request do not grow with the number of nested objects (DataLoaders batch them)."""
    w, api = setup
    certs = "query($n: Int) { certificates(first: $n) { nodes { id batch { projectId } provenance { kind fromAddress } } } }"
    folio = 'query { portfolio(owner: "%s") { holdings { batch { serialNumber } value } certificates { batch { vintage } } } }' % A

    def count(q: str, **v: object) -> int:
        before = api.db.statements
        api.q(q, v)
        return api.db.statements - before

    assert count(certs, n=1) == count(certs, n=12) == 3  # certificates, batch loader, provenance loader
    assert count(folio) == 3  # portfolio (holdings joined with batches and prices), certificates_of, batch loader


def test_ops_routes_and_graphiql(setup):
    w, api = setup
    assert api.get("/health").status_code == 200
    api.loop.run_until_complete(asyncio.sleep(0))
    ready = api.get("/ready")
    assert ready.status_code in (200, 503) and "ready" in ready.json()
    api.q("{ _meta { chain } }")
    metrics = api.get("/metrics")
    assert metrics.status_code == 200 and "api_request_seconds" in metrics.text
    page = api.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()
    bad = api.loop.run_until_complete(api.http.post("/graphql", content=b"{not json", headers={"content-type": "application/json"}))
    assert bad.status_code == 400


def test_answers_after_a_reorg(setup):
    w, api = setup
    q = '{ portfolio(owner: "%s") { holdings { batchId tradable } } _meta { block { number hash } } }' % B
    assert api.q(q)["portfolio"]["holdings"] == [{"batchId": "1", "tradable": "10"}]
    ancestor = w.number - 1
    w.reorg(ancestor)  # the transfer to B is undone
    d = api.q(q)
    assert d["portfolio"]["holdings"] == [] and d["_meta"][0]["block"]["number"] == ancestor
    w.transfer(A, B, 2, 7)  # the new branch sends something else
    d = api.q(q)
    assert d["portfolio"]["holdings"] == [{"batchId": "2", "tradable": "7"}]
    assert d["_meta"][0]["block"] == {"number": ancestor + 1, "hash": w.block_hashes[ancestor + 1]}
    a = api.q('{ portfolio(owner: "%s") { holdings { batchId tradable } } }' % A)["portfolio"]["holdings"]
    assert {"batchId": "1", "tradable": "99"} in a and {"batchId": "2", "tradable": "191"} in a


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_carbonledger_serve_starts_the_api(db_url, level):
    """`carbonledger serve` under uvicorn: GraphQL, GraphiQL and the ops routes on a real socket, logging JSON
    lines at the configured `log_level` (a client's bad query is a debug line, not an incident)."""
    import os
    import socket
    import subprocess
    import sys
    import time

    import httpx
    import orjson

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONLEDGER_")}
    env.update(CARBONLEDGER_DATABASE_URL=db_url, CARBONLEDGER_CONFIG=os.devnull, CARBONLEDGER_LOG_LEVEL=level)
    proc = subprocess.Popen([sys.executable, "-m", "carbonledger.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "serve did not become ready"
            time.sleep(0.2)
        r = httpx.post(base + "/graphql", json={"query": "{ _meta { chain } }"})
        assert r.status_code == 200 and r.json() == {"data": {"_meta": []}}
        assert httpx.post(base + "/graphql", json={"query": "{ nope }"}).json()["errors"]
        assert "graphiql" in httpx.get(base + "/graphql", headers={"accept": "text/html"}).text.lower()
        assert httpx.get(base + "/metrics").status_code == 200
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0].decode()
    lines = [orjson.loads(x) for x in out.splitlines() if x.startswith("{")]
    debug = [x for x in lines if x["level"] == "debug" and "nope" in x["msg"]]
    assert bool(debug) == (level == "DEBUG"), out[-2000:]


def test_execution_stops_at_the_request_time_budget(db_url):
    """A request whose first statement returns after its budget completes no object and starts no statement
    after it, and says so once (not once per object)."""
    import threading

    import psycopg

    w = World(db_url)
    for b in range(1, 6):
        w.create_batch(b)
        w.mint(A, b, 10)
        w.retire(A, b, 1)
    api = ApiClient(db_url, request_timeout_ms=300, answer_cache_mb=0)  # the same question twice: both execute
    blocker = psycopg.connect(db_url)
    try:
        q = '{ a: certificate(id: "1") { id batch { chain } provenance { kind } } b: certificate(id: "2") { id } }'
        assert api.q(q)["b"] == {"id": "2"}  # within budget
        blocker.execute("LOCK TABLE retirement IN ACCESS EXCLUSIVE MODE")  # the next certificates query waits
        threading.Timer(1.0, blocker.commit).start()
        before = api.db.statements
        r = api.post(q)
        body = r.json()
        assert r.status_code == 200 and body["data"] == {"a": None, "b": None}, body
        assert [e["extensions"]["code"] for e in body["errors"]] == ["TIME_BUDGET_EXCEEDED"], body
        assert "time budget (300 ms)" in body["errors"][0]["message"]
        assert api.db.statements - before == 1  # b never started its statement, nor did the batch or provenance loaders
    finally:
        blocker.close()
        api.close()
        w.close()
