"""Document admission (gqlapi.guard): limits on the expanded operation, measured in linear time, judged off the
event loop, with coded errors; a bounded judging queue shared fairly between clients. Times are CPU times of this
thread (fair on a loaded machine), or ratios; a slow judgement is a judge that blocks until the test releases it
(never "a document that takes more than N ms here"); every wait has a deadline."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from graphql import parse, specified_rules, validate

from gqlapi.costs import DocumentLimits, check_costs
from gqlapi.guard import Guard
from gqlapi.schema import make_schema
from gqlapi.testing import doubling

OPERATIONS = sorted((Path(__file__).resolve().parents[2] / "graphql" / "operations").glob("*.graphql"))
DEADLINE = 60.0  # seconds any wait in these tests may take before it fails (a stuck test, not a slow machine)


@pytest.fixture(scope="module")
def guard() -> Guard:
    return make_schema().carbon_guard


def codes(guard: Guard, query: str) -> list[str]:
    return [e.extensions["code"] for e in guard.judge(query).errors]


def cpu_ms(fn, *args) -> float:
    """Best of three runs, in CPU milliseconds of this thread."""
    best = float("inf")
    for _ in range(3):
        t0 = time.thread_time()
        fn(*args)
        best = min(best, time.thread_time() - t0)
    return best * 1000


def test_the_issue_fragment_bomb_is_refused_within_50_ms(guard):
    query = doubling(40)
    assert len(query) < 2000
    errors = guard.judge(query).errors
    assert [e.extensions["code"] for e in errors] == ["MAX_SELECTIONS_EXCEEDED"]
    assert "2199023255551 fields" in errors[0].message and "at most 500" in errors[0].message
    assert cpu_ms(guard.judge, query) < 50


def test_measuring_is_linear_in_the_document():
    """Doubling chains of 100 and 800 fragments (memoised: ~8x the work; walking spreads: 2^700 times more)."""
    small, large = parse(doubling(100)), parse(doubling(800))
    limits = DocumentLimits()
    ratio = cpu_ms(check_costs, large, limits) / cpu_ms(check_costs, small, limits)
    assert ratio < 24, ratio
    assert check_costs(large, limits)[0].extensions["code"] == "MAX_SELECTIONS_EXCEEDED"


@pytest.mark.parametrize("query, code", [
    (doubling(40), "MAX_SELECTIONS_EXCEEDED"),
    (doubling(30, leaf="a: _meta { chain } b: _meta { chain }"), "MAX_ALIASES_EXCEEDED"),
    (doubling(30, spread="... on Query { ...F# } ... on Query { ...F# }"), "MAX_SELECTIONS_EXCEEDED"),
    (doubling(30, spread="...F# @include(if: $v) ...F# @skip(if: $v)", head="query($v: Boolean!)"),
     "MAX_SELECTIONS_EXCEEDED"),
    ("{ " + " ".join(f"...F{i}" for i in range(300)) + " } "  # many small fragments: 300 spreads, 600 selections
     + " ".join(f"fragment F{i} on Query {{ __typename }}" for i in range(300)), "MAX_TOKENS_EXCEEDED"),
    ("{ " + " ".join(f"a{i}: _meta {{ chain }}" for i in range(31)) + " }", "MAX_ALIASES_EXCEEDED"),
    ("query { ...A } fragment A on Query { ...B } fragment B on Query { _meta { chain } ...A }", "FRAGMENT_CYCLE"),
    ("query { ...A } fragment A on Query { ...A }", "FRAGMENT_CYCLE"),
    ("{ certificates { nodes { batch { ...B } } } } fragment B on CreditBatch { ... on CreditBatch { chain } }", None),
    ("{" + "_meta {" * 150 + " chain" + "}" * 151, "MAX_DEPTH_EXCEEDED"),
    ("{" + "_meta {" * 300 + " chain" + "}" * 301, "GRAPHQL_PARSE_FAILED"),  # graphql-core's nesting limit
    ("{ _meta { chain ", "GRAPHQL_PARSE_FAILED"),
    ("{ nope }", "GRAPHQL_VALIDATION_FAILED"),
    ('{ _meta(chain: "a\\u0000b") { chain } }', "BAD_USER_INPUT"),
])
def test_each_limit_has_its_code(guard, query, code):
    assert codes(guard, query) == ([] if code is None else [code])


def test_depth_counts_fields_through_fragments_and_inline_fragments():
    g = make_schema(_api(max_depth=4)).carbon_guard
    ok = "{ certificates { nodes { ...C } } } fragment C on Certificate { ... on Certificate { batch { chain } } }"
    assert codes(g, ok) == []
    deep = "{ certificates { edges { node { ...C } } } } fragment C on Certificate { ... on Certificate { batch { chain } } }"
    errors = g.judge(deep).errors
    assert [e.extensions["code"] for e in errors] == ["MAX_DEPTH_EXCEEDED"]
    assert "exceeds maximum operation depth of 4 (it nests 5 fields deep" in errors[0].message


def test_a_fragment_spread_twice_counts_twice():
    g = make_schema(_api(max_selections=20, max_aliases=4)).carbon_guard
    frag = "fragment M on Query { a: _meta { chain } b: _meta { chain } }"
    assert codes(g, "{ ...M } " + frag) == []  # 1 + 2 x 2 selections, 2 aliases
    assert codes(g, "{ ...M x: _meta { ...N } } fragment N on ChainMeta { chain } " + frag) == []
    assert codes(g, "{ ...M ... on Query { ...M } ...M } " + frag) == ["MAX_ALIASES_EXCEEDED"]  # 6 aliases
    g = make_schema(_api(max_selections=10)).carbon_guard
    assert codes(g, "{ ...M ... on Query { ...M } } " + frag) == ["MAX_SELECTIONS_EXCEEDED"]  # 5 + 1 + 5 = 11


def test_introspection_adds_no_depth_but_counts_its_size(guard):
    """GraphiQL's introspection query nests ofType eight deep (strawberry's depth limiter ignored introspection
    too); fanning out through introspection types is still measured."""
    from graphql import get_introspection_query

    full = get_introspection_query(descriptions=True, input_value_deprecation=True, specified_by_url=True,
                                   directive_is_repeatable=True, schema_description=True)
    assert guard.judge(full).errors == []
    bomb = "{ __schema { types { ...F1 } } } " + " ".join(
        f"fragment F{i} on __Type {{ ofType {{ ...F{i + 1} }} fields {{ type {{ ...F{i + 1} }} }} }}" for i in range(1, 30)
    ) + " fragment F30 on __Type { name }"
    assert codes(guard, bomb) == ["MAX_SELECTIONS_EXCEEDED"]


@pytest.mark.parametrize("path", OPERATIONS, ids=lambda p: p.name)
def test_the_documented_operations_are_admitted(guard, path):
    assert guard.judge(path.read_text()).errors == []


def test_admitted_documents_validate_as_graphql_core_says():
    """Our rules are graphql-core's (its field-merging rule with a smaller budget): same verdicts on real documents."""
    g = make_schema().carbon_guard
    docs = [p.read_text() for p in OPERATIONS] + [
        "{ a: _meta { chain } a: _meta(chain: \"x\") { chain } }",
        "{ _meta { chain: finalizedBlock } }",
        "{ certificates { nodes { id ...C } } } fragment C on Certificate { id: amount }",
        "query($c: String) { _meta(chain: $c) { chain } m: _meta { chain } }",
    ]
    for doc in docs:
        ours = bool(g.judge(doc).errors)
        theirs = bool(validate(g.schema, parse(doc), specified_rules))
        assert ours == theirs, doc


def test_the_field_merging_rule_is_held_to_its_budget():
    """400 identical fields are valid, but graphql-core compares them pairwise (its default budget: 500,000 units);
    ours refuses within a small budget, several times faster."""
    g = make_schema(_api(max_selections=1000)).carbon_guard
    query = "{ " + " ".join("_meta { chain }" for _ in range(400)) + " }"
    assert codes(g, query) == ["QUERY_TOO_COMPLEX"]
    document = parse(query)
    ours = cpu_ms(validate, g.schema, document, g.rules)
    theirs = cpu_ms(validate, g.schema, document, specified_rules)
    assert ours * 3 < theirs, (ours, theirs)


class Blocking:
    """Makes `guard`'s judge wait, for the documents containing `marker`, until `release()`: a slow judgement
    that does not depend on how fast this machine is. `calls` lists the documents judged, in order."""

    def __init__(self, guard: Guard, marker: str = "#slow") -> None:
        self.calls: list[str] = []
        self._released = threading.Event()
        self._entered = threading.Semaphore(0)
        real = guard.judge

        def judge(query: str):
            self.calls.append(query)
            if marker in query:
                self._entered.release()
                assert self._released.wait(DEADLINE), "the test never released the judge"
            return real(query)

        guard.judge = judge  # type: ignore[method-assign]

    async def entered(self) -> None:
        """Until a blocked judgement has started (the worker thread holds it)."""
        assert await asyncio.to_thread(self._entered.acquire, True, DEADLINE), "no judgement started"

    def release(self) -> None:
        self._released.set()


async def eventually(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


def scope(client: str) -> dict:
    return {"type": "http", "client": (client, 40000), "headers": []}


def code_of(admitted) -> str | None:
    return admitted.errors[0].extensions["code"] if admitted.errors else None


def test_new_documents_are_judged_off_the_event_loop_within_a_time_budget():
    """A request waits for a verdict at most the time budget (then TIME_BUDGET_EXCEEDED), the loop keeps running
    meanwhile, and the verdict still arrives and is kept."""
    g = make_schema(_api(validation_timeout_ms=50)).carbon_guard
    blocked = Blocking(g)
    docs = ["#slow %d\n{ nope }" % i for i in range(3)]

    async def go() -> list:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.001)
                ticks += 1

        task = asyncio.create_task(ticker())
        try:
            waiting = asyncio.gather(*(g.admit(q) for q in docs))
            await blocked.entered()
            held = ticks
            await eventually(lambda: ticks >= held + 3, "the event loop stalled while a document was judged")
            first = await asyncio.wait_for(waiting, DEADLINE)
            blocked.release()
            await eventually(lambda: all(g.cached(q) is not None for q in docs), "the verdicts were never kept")
            return first
        finally:
            task.cancel()

    first = asyncio.run(go())
    assert [code_of(a) for a in first] == ["TIME_BUDGET_EXCEEDED"] * 3  # the judge was held past the budget
    assert [code_of(g.cached(q)) for q in docs] == ["GRAPHQL_VALIDATION_FAILED"] * 3


def test_one_client_cannot_fill_the_judging_queue():
    """A client flooding new documents has at most api.admission_per_client of them judged or waiting; the rest
    are SERVICE_BUSY at once; another client's new document is judged after those few, not after the flood."""
    g = make_schema(_api(admission_per_client=3, admission_queue=100)).carbon_guard
    blocked = Blocking(g)
    flood = ["#slow %d\n{ _meta { chain } }" % i for i in range(20)]
    other = "{ nope }"

    async def go() -> tuple[list, object]:
        attacks = [asyncio.create_task(g.admit(q, scope("203.0.113.7"))) for q in flood]
        await blocked.entered()
        busy = [t for t in attacks if t.done()]  # refused without waiting for the judge
        honest = asyncio.create_task(g.admit(other, scope("198.51.100.1")))
        await asyncio.sleep(0)
        blocked.release()
        return [await asyncio.wait_for(t, DEADLINE) for t in attacks], await asyncio.wait_for(honest, DEADLINE), busy

    answers, honest, busy = asyncio.run(go())
    assert [code_of(a) for a in answers].count("SERVICE_BUSY") == 17 and len(busy) == 17
    assert code_of(honest) == "GRAPHQL_VALIDATION_FAILED"
    assert blocked.calls.index(other) == 3  # judged right after the client's three, not after twenty
    assert "admission_per_client" not in answers[-1].errors[0].message  # a message for the client, not a setting
    assert "3 new documents" in answers[-1].errors[0].message


def test_a_timed_out_judgement_still_counts_against_its_client_until_it_ends():
    """A request that gave up waiting leaves its judgement running (its verdict is kept): it keeps its client's
    slot, so a client cannot pile up work by timing out; once it ends the client may send new documents again."""
    g = make_schema(_api(admission_per_client=1, validation_timeout_ms=20)).carbon_guard
    blocked = Blocking(g)

    async def go() -> list:
        first = await asyncio.wait_for(g.admit("#slow\n{ _meta { chain } }", scope("203.0.113.7")), DEADLINE)
        second = await g.admit("{ __typename }", scope("203.0.113.7"))
        blocked.release()
        await eventually(lambda: g.cached("#slow\n{ _meta { chain } }") is not None, "never judged")
        await eventually(lambda: g.pending == 0, "the judging queue never drained")
        third = await asyncio.wait_for(g.admit("{ __typename }", scope("203.0.113.7")), DEADLINE)
        return [first, second, third]

    first, second, third = asyncio.run(go())
    assert [code_of(first), code_of(second), code_of(third)] == ["TIME_BUDGET_EXCEEDED", "SERVICE_BUSY", None]
    assert not second.final and not first.final and third.final


def test_the_judging_queue_is_bounded_for_all_clients():
    """Past api.admission_queue documents judged or waiting, a new one is SERVICE_BUSY at once (not a wait for a
    time budget it cannot meet); documents already judged are still answered from the cache; the queue drains."""
    g = make_schema(_api(admission_queue=3, admission_per_client=3)).carbon_guard
    known = "{ _meta { chain } }"
    assert asyncio.run(g.admit(known)).errors == []
    blocked = Blocking(g)

    async def go() -> tuple:
        waiting = [asyncio.create_task(g.admit("#slow %d\n{ __typename }" % i, scope(f"203.0.113.{i}")))
                   for i in range(3)]
        await blocked.entered()
        busy = await g.admit("{ nope }", scope("198.51.100.1"))
        cached = await g.admit(known, scope("198.51.100.1"))
        blocked.release()
        done = [await asyncio.wait_for(t, DEADLINE) for t in waiting]
        await eventually(lambda: g.pending == 0, "the judging queue never drained")
        later = await asyncio.wait_for(g.admit("{ nope }", scope("198.51.100.1")), DEADLINE)
        return busy, cached, done, later

    busy, cached, done, later = asyncio.run(go())
    assert code_of(busy) == "SERVICE_BUSY" and "retry" in busy.errors[0].message
    assert cached.errors == [] and [code_of(a) for a in done] == [None] * 3
    assert code_of(later) == "GRAPHQL_VALIDATION_FAILED"


def test_identical_documents_arriving_together_are_judged_once_and_count_once():
    g = make_schema(_api(admission_per_client=1)).carbon_guard
    blocked = Blocking(g)

    async def go() -> list:
        tasks = [asyncio.create_task(g.admit("#slow\n{ nope }", scope("203.0.113.7"))) for _ in range(5)]
        await blocked.entered()
        blocked.release()
        return [await asyncio.wait_for(t, DEADLINE) for t in tasks]

    answers = asyncio.run(go())
    assert [code_of(a) for a in answers] == ["GRAPHQL_VALIDATION_FAILED"] * 5 and len(blocked.calls) == 1


def test_a_document_over_max_query_bytes_is_refused_before_it_is_parsed(monkeypatch):
    """The issue's case: 1 MB of comment lines around `{ __typename }` has few tokens (long comments) but took
    0.26 s to lex; comments, whitespace and multi-byte characters all count toward api.max_query_bytes (32 KB)."""
    import gqlapi.guard

    g = make_schema().carbon_guard
    padded = ("#" + "x" * 1000 + "\n") * 1000 + "{ __typename }"
    wide = "# " + "é" * 16_500 + "\n{ __typename }"  # 16,515 characters, 33,015 UTF-8 bytes
    fits = "# " + "x" * 32_000 + "\n{ __typename }"
    parsed: list[str] = []
    real_parse = gqlapi.guard.parse
    monkeypatch.setattr(gqlapi.guard, "parse", lambda source, **kw: parsed.append(source) or real_parse(source, **kw))
    for doc in (padded, wide):
        errors = g.judge(doc).errors
        assert [e.extensions["code"] for e in errors] == ["MAX_QUERY_BYTES_EXCEEDED"], errors
        assert "32768 bytes" in errors[0].message
        assert code_of(asyncio.run(g.admit(doc))) == "MAX_QUERY_BYTES_EXCEEDED"
    assert parsed == []
    assert g.judge(fits).errors == []
    small = make_schema(_api(max_query_bytes=1024)).carbon_guard
    assert codes(small, fits) == ["MAX_QUERY_BYTES_EXCEEDED"] and codes(small, "{ __typename }") == []


def test_comments_count_toward_the_token_limit(guard):
    """Short comments stay within the size limit: each counts as a token (graphql-core reads it as one)."""
    doc = "#\n" * 2500 + "{ __typename }"
    assert len(doc) < 32_768 and codes(guard, doc) == ["MAX_TOKENS_EXCEEDED"]


def test_refusals_are_kept_by_digest_without_their_text():
    """A refused document is judged once, and what is kept of it is its errors, not its text: many refused 30 KB
    documents do not hold 30 KB each (nor their parsed documents)."""
    import gc
    import tracemalloc

    g = make_schema().carbon_guard
    blocked = Blocking(g, marker="never")
    big = "# %s\n{ nope }" % ("x" * 30_000)
    first, again = asyncio.run(g.admit(big)), asyncio.run(g.admit(big))
    assert code_of(first) == code_of(again) == "GRAPHQL_VALIDATION_FAILED" and len(blocked.calls) == 1
    assert again.errors[0].locations == first.errors[0].locations and again.errors[0].locations

    g = make_schema().carbon_guard  # no stub recording the documents
    # Counted: blocks allocated by this file (the documents), the guard and graphql-core / strawberry (what they
    # keep), not by threads an earlier test left running (a pool's or a logger's allocations came and went here).
    where = [tracemalloc.Filter(True, p) for p in (__file__, "*/gqlapi/*", "*/graphql/*", "*/strawberry/*")]

    def traced() -> int:
        gc.collect()
        return sum(s.size for s in tracemalloc.take_snapshot().filter_traces(where).statistics("filename"))

    tracemalloc.start()  # before the warm-up: what replaces a traced block is then counted net
    try:
        for i in range(100):  # fills caches that stop growing: the interpreter's method cache keeps up to 4,096
            asyncio.run(g.admit("# warm %d\n{ nope }" % i))  # of the names graphql-core's visitors look up
        before = traced()
        for i in range(40):
            assert code_of(asyncio.run(g.admit("# %d %s\n{ nope }" % (i, "x" * 30_000)))) == "GRAPHQL_VALIDATION_FAILED"
        kept = traced() - before
    finally:
        tracemalloc.stop()
    assert kept < 40 * 30_000 / 4, kept  # ~1.5 KB each here; keeping the texts: over 40 * 30 KB


def test_any_refusal_within_max_query_bytes_is_kept():
    """Refusals used to be kept only for documents under 32 KB, so longer ones were judged on every request."""
    g = make_schema(_api(max_query_bytes=65_536)).carbon_guard
    blocked = Blocking(g, marker="never")
    big = "# %s\n{ nope }" % ("x" * 50_000)
    assert [code_of(asyncio.run(g.admit(big))) for _ in range(3)] == ["GRAPHQL_VALIDATION_FAILED"] * 3
    assert len(blocked.calls) == 1


def test_a_cached_refusal_answers_like_the_first():
    """Strawberry's path answers a refused document from the cache exactly as it did the first time (all its
    errors and their locations), though only the errors are kept."""
    from gqlapi.schema import make_schema as fresh

    schema = fresh()
    for doc in ("{ nope alsoNope }", "query A { nope } query B { _meta { x } }", "{ _meta { chain ", "mutation { nope }"):
        first = asyncio.run(schema.execute(doc))
        again = asyncio.run(schema.execute(doc))
        assert first.errors and [e.formatted for e in again.errors] == [e.formatted for e in first.errors], doc


def _api(**kw):
    from core.config import ApiSettings

    return ApiSettings(**kw)
