"""The sync loop against a scripted node (real Postgres): a lagging or stale node is not a reorg, a block the
node does not have yet is waited for, and a failed prefetch is retried rather than trusted."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex

from chains.base import Block, ChainEvent, ChainReader
from chains.evm.rpc import RpcTransportError
from indexer import indexes
from indexer.sync import PREFETCH, ChainSync
from store.engine import libpq_url
from tests.pg import invalid_index

ALICE = "0x" + "a1" * 20
ZERO = "0x" + "0" * 40


class ScriptedNode(ChainReader):
    """Blocks 0..tip, one mint of 1 credit per block; `visible` caps what head()/block() reveal."""

    chain = "fake"

    def __init__(self, tip: int) -> None:
        self.blocks = [Block("fake", 0, _h("a", 0), _h("-", 0), 1000)]
        self.grow(tip, "a")
        self.visible: int | None = None
        self.head_lag = 0  # head() answers this many blocks low while block() still serves them (a lagging LB)
        self.fail_ranges: set[tuple[int, int]] = set()
        self.calls: list[tuple[int, int]] = []

    def grow(self, tip: int, branch: str) -> None:
        while len(self.blocks) <= tip:
            n = len(self.blocks)
            self.blocks.append(Block("fake", n, _h(branch, n), self.blocks[-1].hash, 1000 + n))

    def chain_id(self) -> int:
        return 1

    def _top(self) -> int:
        return len(self.blocks) - 1 if self.visible is None else self.visible

    def head(self) -> Block:
        return self.blocks[self._top() - self.head_lag]

    def finalized(self, head: Block, depth: int) -> int:
        return head.number - depth

    def block(self, number: int) -> Block | None:
        return self.blocks[number] if number <= self._top() else None

    def _ev(self, b: Block) -> ChainEvent:
        return ChainEvent("fake", "CarbonCredit", "TransferSingle",
                          {"operator": ALICE, "from": ZERO, "to": ALICE, "id": 1, "value": 1},
                          b.number, b.hash, b.timestamp, "0x" + b.hash[3:], 0, "0x" + "cc" * 20)

    def events(self, a: int, b: int):
        self.calls.append((a, b))
        if (a, b) in self.fail_ranges:
            self.fail_ranges.discard((a, b))
            raise RpcTransportError("injected")
        return [self._ev(self.blocks[n]) for n in range(a, b + 1) if n >= 1]

    def events_at(self, block: Block):
        return [self._ev(block)] if block.number >= 1 else []


def _h(branch: str, n: int) -> str:
    return "0x" + branch + f"{n:063x}"


def _tradable(db_url: str) -> int:
    with psycopg.connect(libpq_url(db_url)) as c:
        row = c.execute("SELECT tradable FROM holding WHERE chain = 'fake' AND valid_to IS NULL").fetchone()
        return int(row[0]) if row else 0


def _sync(node: ScriptedNode, db_url: str, **kw) -> ChainSync:
    s = ChainSync("fake", node, db_url, addresses={}, start_block=0, finality_depth=3, **kw)
    s.load()
    return s


def _run(s: ChainSync, limit: int = 500) -> None:
    for _ in range(limit):
        try:
            if not s.step():
                return
        except RpcTransportError:
            continue
    raise AssertionError("did not settle")


def test_lagging_and_stale_nodes_are_not_reorgs(db_url):
    node = ScriptedNode(40)
    s = _sync(node, db_url)
    _run(s)
    assert s.cursor[0] == 40 and _tradable(db_url) == 40
    node.visible = 39  # a node behind us: same hash at a height we hold, lower head
    _run(s)
    assert s.stats.reorgs == 0 and s.cursor[0] == 40
    node.visible = None
    node.grow(45, "a")
    node.visible = 42  # head says 42 but the block after it is not there yet
    _run(s)
    assert s.cursor[0] == 42
    node.visible = None
    _run(s)
    assert s.cursor[0] == 45 and s.stats.reorgs == 0 and _tradable(db_url) == 45
    s.close()


def test_a_shorter_branch_with_new_hashes_is_a_reorg(db_url):
    node = ScriptedNode(40)
    s = _sync(node, db_url)
    _run(s)
    del node.blocks[38:]
    node.grow(39, "b")  # 38', 39' replace 38..40: head below our cursor, different hash at its height
    _run(s)
    assert s.stats.reorgs == 1 and s.cursor == (39, node.blocks[39].hash) and _tradable(db_url) == 39
    s.close()


def test_failed_prefetch_is_refetched(db_url):
    node = ScriptedNode(300)
    s = _sync(node, db_url, target_events=8, max_span=4)
    s.step()  # first range; prefetches the next ones, consecutive
    assert len(s._ahead) == PREFETCH == 2
    assert s._ahead[0][0] == s.cursor[0] + 1 and s._ahead[1][0] == s._ahead[0][1] + 1
    a, b, fut = s._ahead[0]
    fut.result()  # let it finish, then make its result a failure
    node.fail_ranges.add((a, b))
    s._ahead[0] = (a, b, s._pool.submit(node.events, a, b))
    with pytest.raises(RpcTransportError):
        s.step()
    _run(s)
    assert s.cursor[0] == 300 and _tradable(db_url) == 300
    s.close()


def test_head_below_cursor_with_our_block_still_served_is_lagging(db_url):
    node = ScriptedNode(40)
    s = _sync(node, db_url, shrink_grace_s=0)
    _run(s)
    node.head_lag = 2  # the head answer lags, yet block 40 is still there with our hash
    for _ in range(5):
        assert s.step() is False
    assert s.stats.reorgs == 0 and s.cursor[0] == 40 and _tradable(db_url) == 40
    s.close()


def test_shortened_chain_waits_for_the_grace_then_unwinds_to_the_node_head(db_url):
    node = ScriptedNode(40)
    s = _sync(node, db_url, shrink_grace_s=3600)
    _run(s)
    del node.blocks[39:]  # the chain lost its two newest blocks and nothing replaced them
    for _ in range(5):
        assert s.step() is False  # within the grace: could be a lagging node
    assert s.stats.reorgs == 0 and s.cursor[0] == 40
    s.shrink_grace_s = 0
    _run(s)
    assert s.stats.reorgs == 1 and s.cursor == (38, node.blocks[38].hash) and _tradable(db_url) == 38
    node.grow(41, "c")  # and it follows the new branch from there
    _run(s)
    assert s.cursor == (41, node.blocks[41].hash) and _tradable(db_url) == 41
    s.close()


def test_a_node_below_our_finalized_block_is_never_followed_down(db_url):
    node = ScriptedNode(40)
    s = _sync(node, db_url, shrink_grace_s=0)
    _run(s)
    assert s.finalized_number == 37
    node.visible = 30  # a node far behind (or the wrong node): its head is below what we hold as final
    for _ in range(5):
        assert s.step() is False
    assert s.stats.reorgs == 0 and s.cursor[0] == 40 and _tradable(db_url) == 40
    assert "below our finalized block" in s.stats.waiting  # /ready says so
    node.visible = None
    _run(s)
    assert s.stats.waiting is None
    s.close()


def test_backfill_proves_continuity_with_the_block_under_the_cursor(db_url):
    """Down at 40; block 40 is replaced and the chain grows far past finality: the resume is a backfill and its
    first range must not be stacked on our orphaned block 40."""
    node = ScriptedNode(40)
    s = _sync(node, db_url)
    _run(s)
    s.close()
    del node.blocks[40:]
    node.grow(200, "d")
    s = _sync(node, db_url)
    assert s.step() is True and s.stats.reorgs == 1 and s.cursor == (39, node.blocks[39].hash)
    _run(s)
    assert s.cursor == (200, node.blocks[200].hash) and _tradable(db_url) == 200
    s.close()


def test_the_writer_refuses_blocks_that_do_not_continue_the_cursor(db_url):
    from indexer import writer

    node = ScriptedNode(10)
    s = _sync(node, db_url)
    _run(s)
    ctx = s._context()
    orphan = Block("fake", 11, _h("e", 11), _h("e", 10), 2000)
    with pytest.raises(writer.Discontinuity):  # another parent
        writer.commit(s.conn, ctx, s.cursor, orphan, 7, keep_from=4, first=orphan)
    with pytest.raises(writer.Discontinuity):  # a gap: block 12 straight after the cursor at 10
        gap = Block("fake", 12, _h("a", 12), node.blocks[10].hash, 2000)
        writer.commit(s.conn, ctx, s.cursor, gap, 7, keep_from=4, first=gap)
    with psycopg.connect(libpq_url(db_url)) as c:
        assert c.execute("SELECT block_number, block_hash FROM indexer_cursor").fetchone() == (10, node.blocks[10].hash)
    s.close()


def test_an_inconsistent_node_is_a_node_fault_not_a_reorg(db_url):
    """Two backends on different branches behind one URL: block 41's parent is not our 40, yet 40 still has our
    hash. Nothing to undo: the step fails as a node fault (backed off), the data stays."""
    from chains.evm.rpc import RpcError

    node = ScriptedNode(40)
    s = _sync(node, db_url)
    _run(s)
    node.blocks.append(Block("fake", 41, _h("z", 41), _h("y", 40), 2000))
    with pytest.raises(RpcError, match="inconsistent"):
        s.step()
    assert s.stats.reorgs == 0 and s.cursor == (40, node.blocks[40].hash) and _tradable(db_url) == 40
    s.close()


@pytest.mark.parametrize("fault", ["below", "above", "twice", "other_hash"])
def test_logs_the_node_should_not_have_answered_are_a_node_fault(db_url, fault):
    from chains.evm.rpc import RpcError

    node = ScriptedNode(200)
    s = _sync(node, db_url, target_events=8, max_span=4, prefetch=False)
    for _ in range(3):
        s.step()
    good = node.events

    def events(a, b):
        out = good(a, b)
        if fault == "below":
            out.append(node._ev(node.blocks[a - 1]))
        elif fault == "above":
            out.append(node._ev(node.blocks[b + 1]))
        elif fault == "twice":
            out.append(out[-1])
        else:
            out[0] = ChainEvent(**{**{f: getattr(out[0], f) for f in out[0].__slots__}, "block_hash": _h("q", a)})
        return out

    node.events = events
    s.flush()  # the last good range's write is committed before we look
    before = _tradable(db_url)
    with pytest.raises(RpcError):
        for _ in range(50):
            s.step()
    assert _tradable(db_url) == before
    node.events = good
    _run(s)
    assert s.cursor == (200, node.blocks[200].hash) and _tradable(db_url) == 200
    s.close()


def test_two_protocol_events_at_one_position_are_not_a_duplicate(db_url):
    """A Substrate event can map to two protocol events at one position (Issued -> TransferSingle + Minted): that
    is not the node answering a log twice."""
    node = ScriptedNode(20)
    good = node.events

    def events(a, b):
        out = good(a, b)
        return out + [ChainEvent(**{**{f: getattr(e, f) for f in e.__slots__}, "name": "Minted",
                                    "args": {"to": ALICE, "batchId": 1, "amount": 1, "verificationHash": "0x" + "0" * 64}})
                      for e in out]

    node.events = events
    s = _sync(node, db_url)
    _run(s)
    assert s.cursor == (20, node.blocks[20].hash) and s.stats.reorgs == 0
    s.close()


def _table(db_url: str, table: str, order: str) -> list[tuple]:
    with psycopg.connect(libpq_url(db_url)) as c:
        return c.execute(f"SELECT * FROM {table} WHERE chain = 'fake' ORDER BY {order}").fetchall()


def _state(db_url: str) -> dict[str, list[tuple]]:
    """Everything the fake chain produced, minus the bookkeeping timestamps."""
    return {"holding": _table(db_url, "holding", "owner, batch_id, valid_from"),
            "ledger": [r for r in _table(db_url, "ledger_entry", "block_number, log_index")],
            "cursor": [r[:3] for r in _table(db_url, "indexer_cursor", "chain")]}


@pytest.mark.parametrize("cache_limit", [1_000_000, 0], ids=["cached", "lazy"])
def test_pipelined_backfill_writes_on_its_own_thread_and_matches_a_serial_run(db_url, pg_factory, cache_limit,
                                                                               monkeypatch):
    """Backfill writes run on the write thread while the next range is applied (at most one in flight), and
    the result is the serial run's, row for row, whether the state cache is complete or lazy (a lazy miss first
    waits for the write in flight)."""
    import threading
    import time

    from indexer import writer

    real, threads, overlap = writer.commit, [], []
    applied = threading.Condition()
    contexts: list = []  # the Context of each range, in the order the main thread applied them

    def spy(conn, ctx, expected, cursor, *a, **kw):
        threads.append(threading.current_thread().name)
        if threading.current_thread().name.startswith("write-") and cursor.number < 225:
            # Hold this range's write until the main thread is applying the range after it: it only gets there
            # if it did not wait for this write (a range ending below 225 always has a backfill range after it).
            with applied:
                at = next(i for i, c in enumerate(contexts) if c is ctx)
                overlap.append(applied.wait_for(lambda: len(contexts) > at + 1, timeout=60))
        return real(conn, ctx, expected, cursor, *a, **kw)

    monkeypatch.setattr(writer, "commit", spy)
    node = ScriptedNode(240)
    s = _sync(node, db_url, target_events=8, max_span=4, cache_limit=cache_limit)
    inner = s._apply

    def counting(ctx, events):
        with applied:
            contexts.append(ctx)
            applied.notify_all()
        return inner(ctx, events)

    s._apply = counting
    t0 = time.monotonic()
    _run(s)
    assert s.cursor[0] == 240 and s.stats.block == 240 and _tradable(db_url) == 240
    backfill = [t for t in threads if t.startswith("write-")]
    assert len(backfill) >= 40 and len(overlap) >= 30 and all(overlap), (overlap, time.monotonic() - t0)
    s.close()

    serial_url = pg_factory.fresh()
    try:
        serial = _sync(node, serial_url, target_events=8, max_span=4, cache_limit=cache_limit, pipeline=False)
        _run(serial)
        serial.close()
        assert _state(db_url) == _state(serial_url)
    finally:
        pg_factory.drop(serial_url)


def test_a_failed_pipelined_write_is_dropped_and_redone_from_the_database_cursor(db_url, monkeypatch):
    """The cache and the cursor run one range ahead of the database while a write is in flight: when that write
    fails, both are reloaded from the database (whose cursor never left its rows) and the range is done again."""
    from indexer import writer

    real, calls = writer.commit, []

    def flaky(*a, **kw):
        calls.append(1)
        if len(calls) in (5, 9):
            raise psycopg.OperationalError("injected: server closed the connection")
        return real(*a, **kw)

    monkeypatch.setattr(writer, "commit", flaky)
    node = ScriptedNode(120)
    s = _sync(node, db_url, target_events=8, max_span=4)
    failures = 0
    for _ in range(500):
        try:
            if not s.step():
                break
        except psycopg.OperationalError:
            failures += 1
    assert failures == 2 and s.cursor[0] == 120
    assert _tradable(db_url) == 120  # nothing counted twice, nothing lost
    holdings = _table(db_url, "holding", "valid_from")
    blocks = [int(r[_col(db_url, "holding", "valid_from")]) for r in holdings]
    assert blocks == sorted(set(blocks)) and blocks[-1] == 120  # one version per block, no duplicate
    s.close()


def test_a_pipelined_write_fenced_by_another_writer_reloads(db_url):
    """Another process moves the cursor while our write is in flight: the write is fenced, nothing of it lands,
    and the loop continues from the database's cursor."""
    node = ScriptedNode(120)
    s = _sync(node, db_url, target_events=8, max_span=4)
    for _ in range(4):
        s.step()
    s._quiesce()
    with psycopg.connect(libpq_url(db_url), autocommit=True) as c:  # "another indexer" wrote a block meanwhile
        c.execute("UPDATE indexer_cursor SET block_hash = '0xother' WHERE chain = 'fake'")
        s.step()  # hands the next range over; its write is fenced
        s._quiesce()
        with pytest.raises(Exception) as info:
            for _ in range(3):
                s.step()
        assert "cursor" in str(info.value)
        assert s.cursor[1] == "0xother"  # reloaded from the database, not the range we ran ahead with
        c.execute("UPDATE indexer_cursor SET block_hash = %s WHERE chain = 'fake'", (node.blocks[s.cursor[0]].hash,))
    s.load()
    _run(s)
    assert s.cursor[0] == 120 and _tradable(db_url) == 120
    s.close()


def _col(db_url: str, table: str, column: str) -> int:
    with psycopg.connect(libpq_url(db_url)) as c:
        cur = c.execute(f"SELECT * FROM {table} LIMIT 0")
        return [d.name for d in cur.description].index(column)


def _missing(db_url: str) -> list[str]:

    with psycopg.connect(libpq_url(db_url)) as c:
        return indexes.missing(c)


def test_a_cold_backfill_builds_the_event_indexes_after_catching_up(db_url):
    """First run on an empty database: the event and entity tables' secondary indexes are gone while it backfills and all
    back (as the models define them) before it reports caught up; unique indexes never leave."""

    node = ScriptedNode(200)
    s = _sync(node, db_url, target_events=8, max_span=4)
    assert sorted(_missing(db_url)) == sorted(indexes.DEFERRABLE)
    assert {"ix_ledger_entry_batch", "ix_holding_owner_current", "ix_holding_born"} <= set(indexes.DEFERRABLE)
    with psycopg.connect(libpq_url(db_url)) as c:
        uniques = c.execute("SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'uq_%'").fetchone()[0]
    for _ in range(5):
        s.step()
    assert not s.caught_up() and _missing(db_url)
    _run(s)
    assert s.caught_up() and _missing(db_url) == [] and _tradable(db_url) == 200
    with psycopg.connect(libpq_url(db_url)) as c:
        assert c.execute("SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'uq_%'").fetchone()[0] == uniques
    s.close()
    # A later start on the same (no longer empty) database leaves the indexes alone.
    again = _sync(node, db_url)
    assert _missing(db_url) == []
    again.close()


def test_indexes_a_crash_left_missing_are_built_by_the_next_start(db_url):
    """The catalog is the state: a run killed mid-backfill leaves the indexes dropped; the next start, on a
    database that now holds rows, still builds them once it has caught up."""
    node = ScriptedNode(120)
    s = _sync(node, db_url, target_events=8, max_span=4)
    for _ in range(6):
        s.step()
    s.flush()
    s.conn.close()  # "killed": no catch-up, indexes still missing, rows committed
    s.wconn.close()
    assert _missing(db_url) and _tradable(db_url) > 0
    s2 = _sync(node, db_url, target_events=8, max_span=4)
    _run(s2)
    assert _missing(db_url) == [] and _tradable(db_url) == 120
    s2.close()


@pytest.mark.parametrize("name, columns", [("ix_ledger_entry_to", "chain, to_addr, block_number"),
                                           ("ix_ledger_entry_block_number", "block_number"),
                                           ("ix_ledger_entry_to_batch", "chain, to_addr, batch_id, block_number"),
                                           ("ix_ledger_entry_from", "chain, from_addr, block_number")])
def test_an_obsolete_index_an_older_indexer_rebuilt_is_dropped_at_start(db_url, name, columns):
    """Migrations 0009-0011 dropped or renamed these; an indexer of the release before, still running then, builds
    one again once it finds it missing. This release's indexer drops it when it loads, and never builds it."""
    assert name in indexes.OBSOLETE
    node = ScriptedNode(40)
    s = _sync(node, db_url, target_events=8, max_span=4)
    _run(s)
    s.close()
    with psycopg.connect(libpq_url(db_url), autocommit=True) as c:
        c.execute(f"CREATE INDEX {name} ON ledger_entry ({columns})")
    s2 = _sync(node, db_url)
    with psycopg.connect(libpq_url(db_url)) as c:
        assert c.execute("SELECT count(*) FROM pg_indexes WHERE indexname = %s", (name,)).fetchone()[0] == 0
    assert _missing(db_url) == []
    s2.close()


def test_an_invalid_index_counts_as_missing_and_is_built_again(db_url):
    """A CREATE INDEX CONCURRENTLY that failed (a migration's, an operator's) leaves an INVALID index of its name,
    which pg_indexes still lists and no query uses. The indexer counts it missing and builds it again as the models
    define it; `CREATE INDEX IF NOT EXISTS` alone would have kept the broken one."""
    node = ScriptedNode(40)
    s = _sync(node, db_url, target_events=8, max_span=4)
    _run(s)
    s.close()
    name = "ix_ledger_entry_receiver"
    with psycopg.connect(libpq_url(db_url), autocommit=True) as c:
        c.execute(f"DROP INDEX {name}")
        invalid_index(c, name)
    assert _missing(db_url) == [name]
    s2 = _sync(node, db_url)
    _run(s2)
    assert _missing(db_url) == []
    with psycopg.connect(libpq_url(db_url)) as c:
        valid, unique, cols = c.execute(
            "SELECT i.indisvalid, i.indisunique, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "WHERE i.indexrelid = %s::regclass", (name,)).fetchone()
    assert valid and not unique and cols.endswith("(to_addr, batch_id, block_number, chain)"), cols
    s2.close()


def _index_state(url: str, name: str) -> str | None:
    with psycopg.connect(url) as c:
        return indexes._catalog(c, [name]).get(name)


def test_an_index_another_session_builds_concurrently_is_left_to_it(db_url):
    """A migration's CREATE INDEX CONCURRENTLY in progress looks INVALID in pg_index, as a failed one does. The
    indexer neither drops it (that would wait for the build, then throw its work away) nor reports caught up
    (ready) while it runs; it goes on following blocks, and once the build has finished it finds nothing to build."""
    node = ScriptedNode(40)
    s = _sync(node, db_url, target_events=8, max_span=4)
    _run(s)
    s.close()
    url, name = libpq_url(db_url), "ix_ledger_entry_receiver"
    ddl = str(CreateIndex(indexes.DEFERRABLE[name]).compile(dialect=postgresql.dialect()))
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f"DROP INDEX {name}")
    held = psycopg.connect(url)  # an open transaction that may write the table: the concurrent build waits for it
    held.execute("LOCK TABLE ledger_entry IN ROW EXCLUSIVE MODE")
    migration = psycopg.connect(url, autocommit=True)
    build = threading.Thread(target=migration.execute, args=(ddl.replace("CREATE INDEX", "CREATE INDEX CONCURRENTLY"),))
    build.start()
    stepped: threading.Thread | None = None
    try:
        deadline = time.monotonic() + 120
        while _index_state(url, name) != indexes.BUILDING:
            assert time.monotonic() < deadline, "the concurrent build never started"
            time.sleep(0.05)
        s2 = _sync(node, db_url)
        node.grow(50, "a")
        stepped = threading.Thread(target=_run, args=(s2,), daemon=True)
        stepped.start()
        stepped.join(120)  # the fix returns at once; the old code waited here for the build (and so for `held`)
        assert not stepped.is_alive(), "the indexer waited for another session's concurrent build"
        assert s2.cursor[0] == 50 and _tradable(db_url) == 50  # blocks are still followed
        assert not s2.caught_up() and name in (s2.stats.waiting or "")
        assert _index_state(url, name) == indexes.BUILDING  # not dropped
    finally:
        held.commit()
        build.join()
        if stepped is not None:
            stepped.join()
        held.close()
        migration.close()
    assert _index_state(url, name) == indexes.VALID
    deadline = time.monotonic() + 120
    while not s2.caught_up():  # looked at again each second
        assert time.monotonic() < deadline
        s2.step()
        time.sleep(0.05)
    assert s2.stats.waiting is None and _missing(db_url) == []
    s2.close()


def test_defer_indexes_off_keeps_them(db_url):
    node = ScriptedNode(60)
    s = _sync(node, db_url, target_events=8, max_span=4, defer_indexes=False)
    assert _missing(db_url) == []
    _run(s)
    assert _missing(db_url) == [] and _tradable(db_url) == 60
    s.close()


def test_database_trouble_reopens_both_connections(db_url):
    """A connection the server terminated in the middle of a pipeline can stay neither closed nor
    broken, stuck in libpq's pipeline mode, so every write on it fails. After database trouble the sync drops both
    of its connections (`disconnect`, what the runner calls), and the next load opens fresh ones."""
    node = ScriptedNode(300)
    s = _sync(node, db_url, target_events=8, max_span=4)
    s.step()
    s.flush()
    stuck = s.wconn
    stuck.pgconn.enter_pipeline_mode()  # what the terminated executemany left behind
    with pytest.raises(psycopg.OperationalError):
        for _ in range(10):
            s.step()
    assert not stuck.closed and not stuck.broken  # nothing about it says "reconnect me"
    s.disconnect()
    assert stuck.closed and s.conn.closed
    s.load()
    assert s.wconn is not stuck and not s.wconn.closed
    _run(s)
    assert s.cursor[0] == 300 and _tradable(db_url) == 300
    s.close()


def test_two_indexers_building_the_deferred_indexes_at_once_both_succeed(db_url):
    """Two chains' indexers that started on one empty database both find the indexes missing once they catch up,
    possibly at the same moment. Postgres lets two CREATE INDEX of the same name run together and fails the second
    with a unique violation on its catalog; the builds take turns instead, and the second finds nothing left."""
    import threading


    conns = [psycopg.connect(libpq_url(db_url), autocommit=True) for _ in range(4)]
    try:
        assert indexes.drop(conns[0])
        assert sorted(_missing(db_url)) == sorted(indexes.DEFERRABLE)
        start, errors = threading.Barrier(2), []

        def build(chain: str, conn: psycopg.Connection, helper: psycopg.Connection) -> None:
            start.wait(30)
            try:
                indexes.build(conn, chain, helper)
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=build, args=("a", conns[0], conns[1])),
                   threading.Thread(target=build, args=("b", conns[2], conns[3]))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == [] and _missing(db_url) == []
    finally:
        for c in conns:
            c.close()
