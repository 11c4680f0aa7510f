"""The answer cache (gqlapi.answers): a repeated question is answered from memory, and never after the data changed.

Every test asks through the real endpoint on a real Postgres, compares with the same question asked of an API with
the cache off, and changes the data the ways it changes in production: an indexer commit, a reorg undo, a verifier's
approval (oracle_verification), and the clock moving a marketStats window.
"""

from __future__ import annotations

import time

import psycopg
import pytest

from gqlapi.answers import Answers, classify
from gqlapi.schema import make_schema
from gqlapi.testing import ApiClient, World, addr, h

A, B, C = addr(1), addr(2), addr(3)
FOLIO = 'query($o: String!) { portfolio(owner: $o) { totals { balance retired } holdings { batchId tradable } } }'
CERT = ('query($id: BigInt!) { certificate(id: $id) { id amount batch { projectId } '
        'provenance { kind amount verificationHash requestedBy approvedBy } } }')
STATS = 'query($b: BigInt!) { marketStats(batchId: $b) { tradeCount volume lastPrice floor openListings } }'


@pytest.fixture()
def world(db_url):
    w = World(db_url)
    w.create_batch(1)
    w.mint(A, 1, 100, verification=h("verifier", 1))
    w.transfer(A, B, 1, 30)
    w.retire(B, 1, 5)
    yield w
    w.close()


@pytest.fixture()
def apis(db_url, world):
    cached, plain = ApiClient(db_url), ApiClient(db_url, answer_cache_mb=0)
    yield cached, plain
    cached.close()
    plain.close()


def ask_both(apis, q: str, v: dict | None = None) -> dict:
    cached, plain = apis
    got, want = cached.q(q, v), plain.q(q, v)
    assert got == want
    return got


def test_a_repeated_question_runs_no_statement_until_an_indexer_commit(world, apis):
    cached, _ = apis
    answers = cached.app.state.graphql.answers
    first = ask_both(apis, FOLIO, {"o": A})
    before, hits = cached.db.statements, answers.hits
    for _ in range(5):
        assert cached.q(FOLIO, {"o": A}) == first
    assert cached.db.statements == before and answers.hits == hits + 5
    # Other variables are another question.
    assert ask_both(apis, FOLIO, {"o": B})["portfolio"]["totals"]["balance"] == "25"
    # New rows with a new cursor: the next answer is executed and shows them.
    world.transfer(A, C, 1, 10)
    before = cached.db.statements
    after = ask_both(apis, FOLIO, {"o": A})
    assert after != first and after["portfolio"]["totals"]["balance"] == "60"
    assert cached.db.statements > before


def test_a_reorg_undo_is_seen_at_once(world, apis):
    base = ask_both(apis, FOLIO, {"o": A})
    ancestor = world.number
    world.transfer(A, C, 1, 40)
    moved = ask_both(apis, FOLIO, {"o": A})
    assert moved["portfolio"]["totals"]["balance"] == "30"
    world.reorg(ancestor)
    assert ask_both(apis, FOLIO, {"o": A}) == base


def test_rows_written_inside_one_block_are_seen_as_they_land(world, apis):
    """World writes a block row by row, not as the indexer (which commits a block with its cursor): each of its
    statements bumps the table's data_version, as any writer's but the indexer's does."""
    with world.block():
        world.transfer(A, C, 1, 1)
        one = ask_both(apis, FOLIO, {"o": C})
        world.transfer(A, C, 1, 2)
        assert ask_both(apis, FOLIO, {"o": C}) != one


def test_a_verifier_approval_changes_the_provenance_answer(db_url, world, apis):
    cached, _ = apis
    first = ask_both(apis, CERT, {"id": "1"})
    mint = first["certificate"]["provenance"][0]
    assert (mint["kind"], mint["requestedBy"], mint["approvedBy"]) == ("MINT", None, None)
    assert cached.q(CERT, {"id": "1"}) == first  # kept
    with psycopg.connect(db_url, autocommit=True) as conn:  # what oracle.records writes, in its own transactions
        conn.execute("INSERT INTO oracle_verification (id, recipient, batch_id, amount, verification_hash, canonical, "
                     "status, requested_by) VALUES ('v1', %s, '1', '100', %s, '{}', 'requested', 'alice')",
                     (A, h("verifier", 1)))
        requested = ask_both(apis, CERT, {"id": "1"})["certificate"]["provenance"][0]
        assert (requested["requestedBy"], requested["approvedBy"]) == ("alice", None)
        conn.execute("UPDATE oracle_verification SET status = 'approved', approved_by = 'bob', approved_at = now() "
                     "WHERE id = 'v1'")
    approved = ask_both(apis, CERT, {"id": "1"})["certificate"]["provenance"][0]
    assert (approved["requestedBy"], approved["approvedBy"]) == ("alice", "bob")


def test_a_write_by_anyone_but_the_indexer_is_seen_at_once(db_url, world, apis):
    """An operator's repair in psql moves no cursor: its statement bumps the table's data_version. The indexer's
    sessions (indexer.writer.connect) bump nothing: their cursor says it."""
    from indexer.writer import connect

    first = ask_both(apis, FOLIO, {"o": B})
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE holding SET tradable = 7 WHERE owner = %s AND valid_to IS NULL", (B,))
    assert ask_both(apis, FOLIO, {"o": B})["portfolio"]["holdings"][0]["tradable"] == "7" != \
        first["portfolio"]["holdings"][0]["tradable"]
    with connect(db_url) as conn:
        before = conn.execute("SELECT string_agg(source || version, ',' ORDER BY source) FROM data_version").fetchone()[0]
        conn.execute("UPDATE holding SET tradable = 8 WHERE owner = %s AND valid_to IS NULL", (B,))
        after = conn.execute("SELECT string_agg(source || version, ',' ORDER BY source) FROM data_version").fetchone()[0]
    assert before == after


def db_second(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT extract(epoch FROM statement_timestamp())::bigint").fetchone()[0]


def test_a_market_window_answer_holds_until_a_trade_leaves_the_window(db_url, world, apis):
    """A trade stamped just inside the DAY window: the kept answer counts it until the database clock moves the
    window past it, then the next answer is executed again and does not; with the window's bounds asked for, an
    answer holds for the current second only."""
    cached, _ = apis
    answers = cached.app.state.graphql.answers
    now = db_second(db_url)
    listing = world.list(A, 1, 10, 7)
    world.buy(C, listing, 2)
    stamp = now - 86_400 + 3  # inside the window for ~3 more seconds
    world.conn.execute("UPDATE trade SET block_timestamp = %s WHERE chain = %s", (stamp, world.chain))
    first = ask_both(apis, STATS, {"b": "1"})
    assert first["marketStats"]["tradeCount"] == 1
    deadline = time.monotonic() + 60
    seen_after = False
    while time.monotonic() < deadline and not seen_after:
        s0 = db_second(db_url)
        got = cached.q(STATS, {"b": "1"})["marketStats"]
        if s0 >= stamp + 86_400 + 1:  # the window [E - 86400, E] no longer holds the trade
            assert got["tradeCount"] == 0 and got["lastPrice"] == "7", got
            seen_after = True
        elif db_second(db_url) < stamp + 86_400 + 1:  # the whole request ran while the trade was in the window
            assert got["tradeCount"] == 1, got
        time.sleep(0.05)
    assert seen_after
    assert answers.hits > 0
    # Bounds asked for: each second has its own answer.
    bounds = 'query($b: BigInt!) { marketStats(batchId: $b) { end tradeCount } }'
    ends = set()
    deadline = time.monotonic() + 30
    while len(ends) < 2 and time.monotonic() < deadline:
        s0 = db_second(db_url)
        end = int(cached.q(bounds, {"b": "1"})["marketStats"]["end"])
        assert end >= s0
        ends.add(end)
        time.sleep(0.1)
    assert len(ends) >= 2


def test_answers_with_errors_and_uncacheable_documents_always_execute(world, apis):
    cached, _ = apis
    meta = "{ _meta { chain block { number } } }"
    for q, v in ((meta, None), ('query($o: String!) { portfolio(owner: $o) { owner } }', {"o": "0xnothex"})):
        cached.post(q, v)
        before = cached.db.statements
        r = cached.post(q, v).json()
        assert cached.db.statements > before or r.get("errors"), r
    prepared = cached.app.state.graphql.prepared
    assert prepared[(meta, None)].cacheable is False
    assert prepared[('query($o: String!) { portfolio(owner: $o) { owner } }', None)].cacheable is True


def test_which_documents_are_kept():
    schema = make_schema()._schema
    from graphql import parse

    def ok(text: str) -> bool:
        doc = parse(text)
        return classify(schema, doc, doc.definitions[0])

    assert ok(FOLIO) and ok(CERT) and ok(STATS)
    assert ok('{ certificate(id: "1") { ...F ... on Certificate { batch { projectId } } } } '
              'fragment F on Certificate { provenance { kind } verification { command } }')
    assert not ok("{ _meta { chain } }")
    assert not ok('{ certificate(id: "1") { id } _meta { chain } }')
    assert not ok('{ escrowOrders { nodes { orderId } } }')
    assert not ok('{ __schema { queryType { name } } }')
    assert ok('{ certificate(id: "1") { __typename id } }')


def test_the_cache_stays_within_its_bytes():
    answers = Answers(8_000)
    state = ("c", "v")
    for i in range(100):
        answers.put(Answers.key("doc", {"i": i}), state, None, b"x" * 400)
        assert answers.bytes <= 8_000
    assert 0 < len(answers.entries) < 100
    assert answers.get(Answers.key("doc", {"i": 99}), state, 0) == b"x" * 400  # the newest is kept
    assert answers.get(Answers.key("doc", {"i": 0}), state, 0) is None  # the oldest went first
    assert answers.get(Answers.key("doc", {"i": 99}), ("c2", "v"), 0) is None  # another state: not this answer
    answers.put(Answers.key("doc", {"i": 1000}), state, 5, b"y")
    assert answers.get(Answers.key("doc", {"i": 1000}), state, 4) == b"y"
    assert answers.get(Answers.key("doc", {"i": 1000}), state, 5) is None  # held until second 5 only
    answers.put(Answers.key("doc", {"i": 2000}), state, None, b"z" * 5_000)  # over an eighth: not kept
    assert Answers.key("doc", {"i": 2000}) not in answers.entries


def test_concurrent_lookups_share_state_reads_and_answer_as_the_uncached_api(world, apis):
    """Requests that arrive together share a read of the state (gqlapi.answers.Probe); each answer is still the one
    the cache-off API gives, and after a commit the next burst shows it."""
    import asyncio

    cached, plain = apis
    probe = cached.app.state.graphql.probe

    def burst(n: int) -> list[dict]:
        async def ask() -> dict:
            r = await cached.http.post("/graphql", json={"query": FOLIO, "variables": {"o": A}})
            assert r.status_code == 200 and not r.json().get("errors"), r.text
            return r.json()["data"]

        async def go() -> list[dict]:
            return await asyncio.gather(*(ask() for _ in range(n)))

        return cached.loop.run_until_complete(go())

    first = burst(1)[0]
    before = probe.reads
    got = burst(40)
    assert all(g == first for g in got) and first == plain.q(FOLIO, {"o": A})
    assert probe.reads - before < 40  # shared: fewer reads than requests
    world.transfer(A, C, 1, 10)
    after = burst(40)
    want = plain.q(FOLIO, {"o": A})
    assert want != first and all(g == want for g in after)
