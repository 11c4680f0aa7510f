"""Version chains stay intact however the writer closes versions: by primary key when the state cache knows the
current version's valid_from (complete cache), by search when it does not (lazy cache), across a reorg."""

from __future__ import annotations

import psycopg
import pytest

from indexer import indexes, writer
from indexer.tables import VERSIONED
from store.engine import libpq_url
from tests.integration.test_indexer_fake_node import ScriptedNode, _run, _sync


def _versions(db_url: str) -> list[tuple[int, int | None, int]]:
    with psycopg.connect(libpq_url(db_url)) as c:
        return [(int(f), None if t is None else int(t), int(v)) for f, t, v in c.execute(
            "SELECT valid_from, valid_to, tradable FROM holding WHERE chain = 'fake' ORDER BY valid_from")]


def _check_chain(db_url: str, tip: int) -> None:
    vs = _versions(db_url)
    assert [v[0] for v in vs] == list(range(1, tip + 1))  # one mint per block: one version per block
    assert [v[1] for v in vs] == list(range(2, tip + 1)) + [None]  # each closed where the next begins
    assert [v[2] for v in vs] == list(range(1, tip + 1))


@pytest.mark.parametrize("cache_limit", [1_000_000, 1, 0])
def test_version_chain_is_contiguous_with_complete_and_lazy_cache(db_url, cache_limit):
    node = ScriptedNode(60)
    s = _sync(node, db_url, target_events=6, max_span=5, cache_limit=cache_limit)
    _run(s)
    _check_chain(db_url, 60)
    del node.blocks[58:]
    node.grow(62, "b")  # a reorg above the finalized block (depth 3): undo 58..60, index 58'..62'
    _run(s)
    assert s.stats.reorgs == 1
    _check_chain(db_url, 62)
    s.close()


def test_known_current_versions_are_closed_by_primary_key_not_searched(db_url):
    node = ScriptedNode(30)
    s = _sync(node, db_url, target_events=4, max_span=3)
    seen: list[str] = []
    real = s.conn.execute

    def spy(sql, *a, **k):
        seen.append(str(sql))
        return real(sql, *a, **k)

    s.conn.execute = spy
    _run(s)
    closes = [q for q in seen if q.startswith("UPDATE holding")]
    assert closes and set(closes) == {writer.CLOSE_SQL[("holding", True)]}, closes  # by full key, never searched
    # Never prepared, however many ranges a connection writes (a cached generic plan is made for the table as it was
    # then: review found one made on a tiny table scanning it once per key after it had grown).
    for conn in (s.conn, s.wconn):
        if conn is not None:
            stmts = [q for (q,) in psycopg.Connection.execute(conn, "SELECT statement FROM pg_prepared_statements")]
            assert not [q for q in stmts if q.startswith("UPDATE")], stmts
    s.close()
    _check_chain(db_url, 30)


@pytest.mark.parametrize("analyzed", [False, True])
@pytest.mark.parametrize("exact", [True, False])
def test_closing_probes_each_key_whatever_the_table_size_or_statistics(db_url, analyzed, exact):
    """The close statement's plan, as the writer runs it (unprepared: planned for its own arguments): one primary-key
    probe per key and an update by ctid, never a scan or a hash join over the chain's versions (its cost must not grow
    with the table), with and without statistics."""
    assert VERSIONED["holding"].key == ("owner", "batch_id")
    n = 1000
    with psycopg.connect(libpq_url(db_url), autocommit=True) as c, c.transaction(force_rollback=True):
        for ix in indexes.DEFERRABLE.values():  # as during a cold backfill: the primary key alone
            if ix.table.name == "holding":
                c.execute(f"DROP INDEX {ix.name}")
        c.execute("INSERT INTO holding (chain, owner, batch_id, valid_from, valid_to, tradable, listed, retired) "
                  "SELECT 'big', 'o' || (i % 5000), i / 5000, i, CASE WHEN i >= 195000 THEN NULL ELSE i END, 1, 0, 0 "
                  "FROM generate_series(0, 199999) i")
        if analyzed:
            c.execute("ANALYZE holding")
        keys = [["o" + str(i % 5000) for i in range(195000, 195000 + n)], [str(39)] * n]
        args = [*keys, *([list(range(195000, 195000 + n))] if exact else []), [10**6] * n, "big"]
        sql = writer.CLOSE_SQL[("holding", exact)]
        plan = "\n".join(r[0] for r in c.execute("EXPLAIN " + sql, args, prepare=False))
        assert "Seq Scan" not in plan and "Hash" not in plan and "Merge" not in plan, plan
        assert "Tid Scan on holding t" in plan and "Index Scan using pk_holding" in plan, plan
        assert c.execute(sql, args, prepare=False).rowcount == n
        assert c.execute("SELECT count(*) FROM holding WHERE chain = 'big' AND valid_to = %s", (10**6,)).fetchone()[0] == n


def test_a_cache_that_disagrees_with_the_table_writes_nothing_and_reloads(db_url):
    node = ScriptedNode(20)
    s = _sync(node, db_url, target_events=4, max_span=3)
    _run(s)
    node.grow(25, "a")
    key = next(iter(s.cache.since["holding"]))
    s.cache.since["holding"][key] -= 1  # corrupt: points at a version that is already closed
    with pytest.raises(Exception, match="closed 0 of 1"):
        for _ in range(50):
            s.step()
    assert s.cache.since["holding"][key] == 20  # reloaded from the table
    _run(s)
    _check_chain(db_url, 25)
    s.close()
