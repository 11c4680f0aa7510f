"""Document admission (gqlapi.guard): limits on the expanded operation, measured in linear time, judged off the
event loop, with coded errors. Times are CPU times of this thread (fair on a loaded machine), or ratios."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from graphql import parse, specified_rules, validate

from gqlapi.guard import DocumentLimits, Guard, check_costs
from gqlapi.schema import make_schema

OPERATIONS = sorted((Path(__file__).resolve().parents[2] / "graphql" / "operations").glob("*.graphql"))


def doubling(n: int, leaf: str = "_meta { chain }", spread: str = "...F# ...F#", head: str = "query") -> str:
    """F1 spreads F2 twice, F2 spreads F3 twice, ...: 2^n fields once expanded (`#`: the next fragment's number)."""
    body = " ".join(f"fragment F{i} on Query {{ {spread.replace('#', str(i + 1))} }}" for i in range(1, n))
    return f"{head} {{ ...F1 }} {body} fragment F{n} on Query {{ {leaf} }}"


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


def test_new_documents_are_judged_off_the_event_loop_within_a_time_budget():
    g = make_schema(_api(max_selections=1000, validation_timeout_ms=10)).carbon_guard
    heavy = ["# %d\n{ %s }" % (i, " ".join("_meta { chain }" for _ in range(400))) for i in range(4)]

    async def go() -> tuple[list, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.001)
                ticks += 1

        task = asyncio.create_task(ticker())
        try:
            first = await asyncio.gather(*(g.admit(q) for q in heavy))
            while any(g.cached(q) is None for q in heavy):  # the verdicts still arrive, and are kept
                await asyncio.sleep(0.01)
            return first, ticks
        finally:
            task.cancel()

    first, ticks = asyncio.run(go())
    # one worker thread: the documents queued behind the first cannot have been judged within 10 ms
    assert all(a.errors[0].extensions["code"] == "TIME_BUDGET_EXCEEDED" for a in first[1:])
    assert first[0].errors[0].extensions["code"] in ("TIME_BUDGET_EXCEEDED", "QUERY_TOO_COMPLEX")
    assert ticks >= 4  # the loop kept running while the documents were judged
    assert all(g.cached(q).errors[0].extensions["code"] == "QUERY_TOO_COMPLEX" for q in heavy)


def _api(**kw):
    from carbonledger.config import ApiSettings

    return ApiSettings(**kw)
