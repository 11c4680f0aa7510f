"""What Postgres would refuse at COPY is refused by Context.insert / Context.put, for every column of every table
the indexer writes (their checks are generated per table from the layouts: this walks the layouts, so a new table
or column is covered without a new test)."""

from __future__ import annotations

import pytest

from chains.base import ChainEvent
from indexer.context import _ENVELOPE, _LIMITS, Context, StateCache
from indexer.tables import EVENTS, VERSIONED

EV = ChainEvent("dev", "X", "Y", {}, 7, "0x" + "11" * 32, 1000, "0x" + "22" * 32, 3, "0x00", 1)


def _sample(typ: str) -> object:
    return {"text": "ok", "jsonb": "{}", "bool": True}.get(typ, 1)


def _ctx() -> Context:
    return Context("dev", StateCache(), {})


def _cases(columns, types):
    for c, t in zip(columns, types):
        if c in _ENVELOPE:
            continue
        if t == "text":
            yield c, "a\x00b", False
            yield c, "a b", True
        elif t in _LIMITS:
            low, high = _LIMITS[t]  # NUMERIC(78, 0): +-(10**78 - 1); int8 / int4: two's complement
            assert (low, high) == {"numeric": (-10**78 + 1, 10**78), "int8": (-2**63, 2**63), "int4": (-2**31, 2**31)}[t]
            yield c, high - 1, True
            yield c, low, True
            yield c, high, False
            yield c, low - 1, False


@pytest.mark.parametrize("table", [t for t in EVENTS if t != "indexing_error"])
def test_insert_builds_the_row_and_refuses_what_copy_would(table):
    lay = EVENTS[table]
    cols = {c: _sample(t) for c, t in zip(lay.columns, lay.types) if c not in _ENVELOPE}
    ctx = _ctx()
    row = ctx.insert(table, EV, **cols)
    envelope = {"chain": "dev", "tx_hash": EV.tx_hash, "log_index": 3, "block_number": 7, "block_hash": EV.block_hash,
                "block_timestamp": 1000, "tx_index": 1}
    assert row == [envelope[c] if c in envelope else cols[c] for c in lay.columns]
    assert ctx.rows[table] == [row]
    for column, value, ok in _cases(lay.columns, lay.types):
        ctx = _ctx()
        if ok:
            assert ctx.insert(table, EV, **{**cols, column: value})[lay.columns.index(column)] == value
        else:
            with pytest.raises(ValueError, match=f"{table}.{column}: "):
                ctx.insert(table, EV, **{**cols, column: value})
            assert ctx.rows[table] == []
    if cols:
        with pytest.raises(KeyError):  # a handler that leaves a column out is a bug, not a NULL
            _ctx().insert(table, EV, **dict(list(cols.items())[1:]))


@pytest.mark.parametrize("table", list(VERSIONED))
def test_put_refuses_state_and_keys_copy_would_refuse(table):
    lay = VERSIONED[table]
    data = [(c, lay.types[lay.columns.index(c)]) for c in lay.data]
    state = {c: _sample(t) for c, t in data}
    key = tuple(_sample(lay.types[lay.columns.index(k)]) for k in lay.key)
    ctx = _ctx()
    ctx.block = 7
    ctx.put(table, key, state)
    assert ctx.get(table, key) == state
    for column, value, ok in _cases([c for c, _ in data], [t for _, t in data]):
        ctx = _ctx()
        if ok:
            ctx.put(table, key, {**state, column: value})
        else:
            with pytest.raises(ValueError, match=f"{table}.{column}: "):
                ctx.put(table, key, {**state, column: value})
            assert ctx.overlay[table] == {}
    for k, t in zip(range(len(key)), [lay.types[lay.columns.index(c)] for c in lay.key]):
        bad = "a\x00b" if t == "text" else 10**78
        with pytest.raises(ValueError, match="NUL|out of range"):
            _ctx().put(table, key[:k] + (bad,) + key[k + 1:], state)
        if t != "text":
            with pytest.raises(ValueError, match="out of range"):
                _ctx().put(table, key[:k] + (-1,) + key[k + 1:], state)


def test_version_rows_close_each_version_with_the_next_and_take_the_key_from_the_key():
    from indexer.tables import VERSION_ROWS

    lay = VERSIONED["holding"]
    out: list = []
    hist = [(5, {"tradable": 1, "listed": 0, "retired": 0}), (9, {"tradable": 2, "listed": 1, "retired": 0}),
            (12, {"tradable": 0, "listed": 0, "retired": 3, "owner": "0xnot-the-key", "chain": "other"})]
    VERSION_ROWS["holding"]("dev", ("0xab", 7), hist, out)
    rows = [dict(zip(lay.columns, r)) for r in out]
    assert [(r["valid_from"], r["valid_to"]) for r in rows] == [(5, 9), (9, 12), (12, None)]
    assert {(r["chain"], r["owner"], r["batch_id"]) for r in rows} == {("dev", "0xab", 7)}
    assert [(r["tradable"], r["listed"], r["retired"]) for r in rows] == [(1, 0, 0), (2, 1, 0), (0, 0, 3)]
    with pytest.raises(KeyError):  # a state without one of its columns is a handler bug, not a NULL
        VERSION_ROWS["holding"]("dev", ("0xab", 7), [(1, {"tradable": 1, "listed": 0})], [])


@pytest.mark.parametrize("table", list(VERSIONED))
def test_put_refuses_a_state_without_one_of_its_columns(table):
    """Found in put (the event's indexing error), not in the write thread (which would fail the range's retries)."""
    lay = VERSIONED[table]
    state = {c: _sample(lay.types[lay.columns.index(c)]) for c in lay.data}
    key = tuple(_sample(lay.types[lay.columns.index(k)]) for k in lay.key)
    for column in lay.data:
        ctx = _ctx()
        with pytest.raises(KeyError):
            ctx.put(table, key, {c: v for c, v in state.items() if c != column})
        assert ctx.overlay[table] == {}


@pytest.mark.parametrize("table", list(VERSIONED))
def test_add_checks_the_sum_and_builds_on_the_current_state(table):
    """Context.add: put() of the current state (overlay, then the committed cache, then `empty`) with a delta added to
    one number column. The sum is refused where Postgres would refuse it, changing nothing; a new entity's key is
    checked as put checks it; each block gets one version."""
    lay = VERSIONED[table]
    types = {c: lay.types[lay.columns.index(c)] for c in lay.data}
    numbers = [c for c in lay.data if types[c] in _LIMITS]
    if not numbers:
        pytest.skip(f"{table} has no number column")
    state = {c: _sample(t) for c, t in types.items()}
    key = tuple(_sample(lay.types[lay.columns.index(k)]) for k in lay.key)
    for column in numbers:
        low, high = _LIMITS[types[column]]
        ctx = _ctx()
        ctx.block = 7
        ctx.add(table, key, column, 5, state)  # absent: from `empty`
        assert ctx.get(table, key) == {**state, column: 6}
        ctx.add(table, key, column, -2, state)  # same block: replaces the version
        ctx.block = 8
        ctx.add(table, key, column, 10, state)
        assert ctx.versions[table][key] == [(7, {**state, column: 4}), (8, {**state, column: 14})]
        assert state[column] == 1  # `empty` and earlier states are never changed in place
        for bad in (high - 14, low - 15):  # 14 + either is just outside the column's range
            with pytest.raises(ValueError, match=f"{table}.{column}: .* out of range"):
                ctx.add(table, key, column, bad, state)
        assert ctx.get(table, key) == {**state, column: 14} and len(ctx.versions[table][key]) == 2
        ctx.add(table, key, column, high - 15, state)  # the highest value the column holds
        assert ctx.get(table, key)[column] == high - 1

        cache = StateCache()  # committed state: the cache's row, never changed in place
        cache.tables[table][key] = committed = {**state, column: 100}
        ctx = Context("dev", cache, {})
        ctx.block = 9
        ctx.add(table, key, column, 1, state)
        assert ctx.get(table, key)[column] == 101 and committed[column] == 100

        if any(lay.types[lay.columns.index(k)] == "text" for k in lay.key):
            bad_key = tuple("a\x00b" if lay.types[lay.columns.index(k)] == "text" else v for k, v in zip(lay.key, key))
            ctx = _ctx()
            with pytest.raises(ValueError, match="NUL"):
                ctx.add(table, bad_key, column, 1, state)
            assert ctx.overlay[table] == {}


def test_add_is_undone_with_the_event_that_made_it():
    ctx = _ctx()

    def handler(ev, c):
        c.add("holding", ("0xab", 1), "tradable", 5, {"tradable": 0, "listed": 0, "retired": 0})
        raise RuntimeError("after the add")

    ctx.add("holding", ("0xab", 1), "tradable", 2, {"tradable": 0, "listed": 0, "retired": 0})
    with pytest.raises(RuntimeError):
        ctx.apply_event(handler, EV)
    assert ctx.get("holding", ("0xab", 1)) == {"tradable": 2, "listed": 0, "retired": 0}
    assert [b for b, _ in ctx.versions["holding"][("0xab", 1)]] == [0]
