"""The one write path: everything a Context buffered, plus the cursor, in a single transaction.

Binary COPY for event rows and new entity versions; one UPDATE per table closes the versions they supersede
(_close_sql). The cursor row is locked and compared first (fencing): if another process moved it, nothing is
written, so two processes that both believe they lead can never write a block twice. In the same place the first
new block's parent hash must equal the cursor's hash (continuity, DESIGN.md invariant 3): no path can move the
cursor onto a branch that does not grow out of the block under it.
"""

from __future__ import annotations

from typing import Any

import orjson
import psycopg

from chains.base import Block
from indexer.context import Context, Key
from indexer.tables import EVENTS, VERSION_ROWS, VERSIONED

EVENT_TABLES = list(EVENTS)
# The live channel (gqlapi.live listens): one small JSON notice per commit or undo, sent inside that transaction, so
# Postgres delivers it only once the rows are visible, and never for a transaction that rolled back. `xid` is the
# transaction's id: a subscriber that read history in a snapshot skips the notices that snapshot already saw.
LIVE_CHANNEL = "carbonledger_live"


def connect(url: str) -> psycopg.Connection:
    """An indexer connection. Its writes to indexed tables move the chain's cursor in the same transaction, which
    is how the API's answer cache learns of them; `carbonledger.indexer = on` tells the tables' data_version triggers
    (store migration 0008) so, and only other writers' statements bump a counter."""
    conn = psycopg.connect(url, autocommit=True)
    conn.execute("SET carbonledger.indexer = on")
    return conn


def _notify(conn: psycopg.Connection, notice: dict[str, Any]) -> None:
    conn.execute("SELECT pg_notify(%s, jsonb_set(%s::jsonb, '{xid}', to_jsonb(pg_current_xact_id()::text))::text)",
                 (LIVE_CHANNEL, orjson.dumps(notice).decode()))


def _touched(ctx: Context) -> list[str]:
    return sorted([t for t, rows in ctx.rows.items() if rows] + [t for t, v in ctx.versions.items() if v])


class Fenced(Exception):
    """The cursor in the database is not where this process expected it: another indexer wrote."""


class Discontinuity(Fenced):
    """The blocks to commit do not grow out of the block under the cursor (the caller must undo a reorg first)."""


def read_cursor(conn: psycopg.Connection, chain: str, *, lock: bool = False) -> tuple[int, str, int] | None:
    row = conn.execute(
        "SELECT block_number, block_hash, finalized_number FROM indexer_cursor WHERE chain = %s"
        + (" FOR UPDATE" if lock else ""), (chain,)).fetchone()
    return (int(row[0]), row[1], int(row[2])) if row else None


def stored_genesis(conn: psycopg.Connection, chain: str) -> str | None:
    row = conn.execute("SELECT genesis_hash FROM indexer_cursor WHERE chain = %s", (chain,)).fetchone()
    return row[0] if row else None


def reset(conn: psycopg.Connection, chain: str) -> dict[str, int]:
    """Delete everything indexed for `chain` (rows, versions, block window, errors, cursor) in one transaction;
    returns rows deleted per table. The oracle's own tables are not touched."""
    out = {}
    with conn.transaction():
        for name in [*EVENT_TABLES, *VERSIONED, "indexed_block", "indexer_cursor"]:
            out[name] = conn.execute(f"DELETE FROM {name} WHERE chain = %s", (chain,)).rowcount
    return out


def _fence(conn: psycopg.Connection, chain: str, expected: tuple[int, str | None]) -> None:
    got = read_cursor(conn, chain, lock=True)
    have = (got[0], got[1]) if got else None
    want = expected if expected[1] is not None else None
    if have != want:
        raise Fenced(f"cursor of {chain} is {got}, expected {expected}")


def _copy(conn: psycopg.Connection, lay: Any, rows: list) -> None:
    if not rows:
        return
    with conn.cursor().copy(lay.copy_sql) as cp:
        cp.set_types(list(lay.types))
        for r in rows:
            cp.write_row(r)


Closes = dict[str, tuple[list[tuple[Key, int, int]], list[tuple[Key, int]]]]


def plan_closes(ctx: Context) -> Closes:
    """Which committed current versions ctx's new versions close, per table: (exact, search). Exact: (key, first new
    block, valid_from of the version to close), known from the cache, closed by primary key (cost independent of the
    entity's history); search: (key, first new block) for lazily-cached misses. An entity the cache knows to be new
    has nothing to close. Computed from the cache as it was before ctx, so call it before ctx.commit_to_cache()
    (a pipelined commit merges ctx into the cache before its write ends)."""
    out: Closes = {}
    for name, changes in ctx.versions.items():
        if not changes:
            continue
        exact: list[tuple[Key, int, int]] = []
        search: list[tuple[Key, int]] = []
        for key, hist in changes.items():
            since = ctx.cache.current_since(name, key)
            if since is False:
                search.append((key, hist[0][0]))
            elif since is not None:
                exact.append((key, hist[0][0], since))
        out[name] = (exact, search)
    return out


def _close_sql(name: str, exact: bool) -> str:
    """One UPDATE closing many current versions of `name`: parameters are one array per key column (text), for an
    exact close also the valid_from of each version to close (int8), the closing block of each (int8), and the chain.

    Each key is probed on its own through the primary key (chain, key..., valid_from: the full key when exact, its
    prefix when searching) and the row it finds is updated by its ctid, so the cost is one index probe per entity
    whatever the table's size or statistics. The LATERAL subquery's OFFSET 0 keeps Postgres from flattening it into
    a join it may plan as a hash join over all of the chain's versions (it did, on a table not yet analyzed: the cost
    grew with the table). A search only matches a version born before its closing block, so the new versions may be
    written before or after it. It replaced one UPDATE per entity (executemany): closing 1,000 versions took 100-145
    ms that way and 25-40 ms this way, measured on the 2-core box.

    Run it unprepared (_close): a prepared statement gets a generic plan after a few runs, estimated for a 10-row
    unnest() and for the table as it was then; one made while the table was tiny scanned it once per key once it had
    grown (12.8 s for 200 closes of a 200k-row table, found in review). Unprepared, each run is planned for its own
    arrays and the table's current size. The ctid update relies on the fence: no one else writes a chain's versions
    while its cursor row is locked (a row another session updated meanwhile would be skipped, not re-checked)."""
    lay = VERSIONED[name]
    casts = ["numeric" if lay.types[lay.columns.index(c)] == "numeric" else "text" for c in lay.key]
    cols = [*lay.key, *(["valid_from"] if exact else []), "b"]
    arrays = ", ".join(["%s::text[]"] * len(lay.key) + ["%s::int8[]"] * (2 if exact else 1))
    match = " AND ".join([f"h.{c} = u.{c}::{cast}" for c, cast in zip(lay.key, casts)]
                         + (["h.valid_from = u.valid_from"] if exact else ["h.valid_from < u.b"]))
    return (f"UPDATE {name} t SET valid_to = x.b FROM (SELECT h.ctid AS tid, u.b FROM unnest({arrays}) "
            f"AS u({', '.join(cols)}) CROSS JOIN LATERAL (SELECT ctid FROM {name} h WHERE h.chain = %s AND {match} "
            "AND h.valid_to IS NULL OFFSET 0) h) x WHERE t.ctid = x.tid")


CLOSE_SQL = {(name, exact): _close_sql(name, exact) for name in VERSIONED for exact in (True, False)}


def _version_rows(ctx: Context, conn: psycopg.Connection) -> None:
    """COPY every new entity version (the ones they supersede are closed by _close, in either order)."""
    for name, changes in ctx.versions.items():
        if changes:
            rows: list[list[Any]] = []
            add = VERSION_ROWS[name]
            for key, hist in changes.items():
                add(ctx.chain, key, hist, rows)
            _copy(conn, VERSIONED[name], rows)


def _close(ctx: Context, conn: psycopg.Connection, closes: Closes) -> list[tuple[str, Any, int]]:
    """Send the UPDATEs closing the versions ctx supersedes; (table, cursor, versions it must close) of each exact
    close, for _closed to check once the results are in (in a pipeline they arrive at its end)."""
    out = []
    for name, changes in ctx.versions.items():
        if not changes:
            continue
        nkey = len(VERSIONED[name].key)
        exact, search = closes[name]
        if exact:
            keys = [[str(k[i]) for k, _, _ in exact] for i in range(nkey)]
            out.append((name, conn.execute(CLOSE_SQL[(name, True)], [*keys, [f for _, _, f in exact],
                                                                     [b for _, b, _ in exact], ctx.chain],
                                           prepare=False), len(exact)))
        if search:
            keys = [[str(k[i]) for k, _ in search] for i in range(nkey)]
            conn.execute(CLOSE_SQL[(name, False)], [*keys, [b for _, b in search], ctx.chain], prepare=False)
    return out


def _closed(sent: list[tuple[str, Any, int]]) -> None:
    for name, cur, want in sent:
        if cur.rowcount != want:  # the cache disagrees with the table: write nothing, reload, redo
            raise Fenced(f"{name}: closed {cur.rowcount} of {want} current versions")


def commit(conn: psycopg.Connection, ctx: Context, expected: tuple[int, str | None], cursor: Block,
           finalized: int, keep_from: int, *, first: Block, genesis: str | None = None, closes: Closes | None = None,
           durable: bool = True) -> None:
    """Write ctx and move the cursor from `expected` to `cursor`, atomically; `first` is the first new block.
    Raises Fenced on a lost race, Discontinuity unless `first` is the block right after the cursor, its parent is the
    cursor's block and `cursor` is not below it. `closes` is plan_closes(ctx) when the caller merged ctx into the
    cache already. `durable=False` lets Postgres acknowledge the commit before its WAL reaches disk
    (synchronous_commit off, this transaction only): a backfill range may use it, because a commit lost to a server
    crash loses its cursor with its rows, and the indexer fetches that range again from the older cursor."""
    # Round trips are few on purpose (a pipelined commit runs on the write thread, which waits for the GIL after
    # each one while the handlers and decoders hold it): BEGIN; the fence with its settings; a COPY per table
    # with rows; everything else in one pipeline; COMMIT.
    with conn.transaction():
        with conn.pipeline():
            if not durable:
                conn.execute("SET LOCAL synchronous_commit = off")
            _fence(conn, ctx.chain, expected)
        if first.number != expected[0] + 1 or cursor.number < first.number or (
                expected[1] is not None and first.parent_hash != expected[1]):
            raise Discontinuity(f"{ctx.chain}: blocks {first.number}-{cursor.number} (parent {first.parent_hash[:10]}) "
                                f"do not continue the cursor {str(expected[1])[:10]} at {expected[0]}")
        for name in EVENT_TABLES:
            _copy(conn, EVENTS[name], ctx.rows[name])
        _version_rows(ctx, conn)
        blocks = {b.number: b for b in ctx.blocks}
        blocks[cursor.number] = cursor
        columns = [list(c) for c in zip(*[(b.number, b.hash, b.parent_hash, b.timestamp) for b in blocks.values()])]
        with conn.pipeline():
            sent = _close(ctx, conn, plan_closes(ctx) if closes is None else closes)
            conn.execute(
                "INSERT INTO indexed_block (chain, number, hash, parent_hash, timestamp) "
                "SELECT %s, * FROM unnest(%s::int8[], %s::text[], %s::text[], %s::int8[]) "
                "ON CONFLICT (chain, number) DO UPDATE SET hash = EXCLUDED.hash, parent_hash = EXCLUDED.parent_hash, "
                "timestamp = EXCLUDED.timestamp",
                (ctx.chain, *columns))
            conn.execute("DELETE FROM indexed_block WHERE chain = %s AND number < %s AND number <> %s",
                         (ctx.chain, keep_from, cursor.number))
            conn.execute(
                "INSERT INTO indexer_cursor (chain, block_number, block_hash, finalized_number, genesis_hash) "
                "VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (chain) DO UPDATE SET block_number = EXCLUDED.block_number, block_hash = EXCLUDED.block_hash, "
                "finalized_number = GREATEST(indexer_cursor.finalized_number, EXCLUDED.finalized_number), "
                "genesis_hash = COALESCE(indexer_cursor.genesis_hash, EXCLUDED.genesis_hash), updated_at = now()",
                (ctx.chain, cursor.number, cursor.hash, finalized, genesis))
            _notify(conn, {"t": "block", "chain": ctx.chain, "from": first.number, "to": cursor.number,
                           "hash": cursor.hash, "kinds": _touched(ctx)})
        _closed(sent)


def undo(conn: psycopg.Connection, chain: str, expected: tuple[int, str | None], ancestor: int, ancestor_hash: str) -> None:
    """Unwind everything above `ancestor` and put the cursor there, in one transaction."""
    with conn.transaction():
        _fence(conn, chain, expected)
        for name in EVENT_TABLES:
            conn.execute(f"DELETE FROM {name} WHERE chain = %s AND block_number > %s", (chain, ancestor))
        for name, lay in VERSIONED.items():
            # A version closed above the ancestor was closed by one born above it with the same key, so reopen
            # through those (index on valid_from, then primary-key lookups) instead of scanning for valid_to.
            keys = ", ".join(lay.key)
            conn.execute(
                f"UPDATE {name} SET valid_to = NULL WHERE chain = %s AND valid_to > %s AND valid_from <= %s "
                f"AND ({keys}) IN (SELECT {keys} FROM {name} WHERE chain = %s AND valid_from > %s)",
                (chain, ancestor, ancestor, chain, ancestor))
            conn.execute(f"DELETE FROM {name} WHERE chain = %s AND valid_from > %s", (chain, ancestor))
        conn.execute("DELETE FROM indexed_block WHERE chain = %s AND number > %s", (chain, ancestor))
        conn.execute("UPDATE indexer_cursor SET block_number = %s, block_hash = %s, updated_at = now() WHERE chain = %s",
                     (ancestor, ancestor_hash, chain))
        # The retraction: blocks from..to (what the old cursor covered above the ancestor) no longer hold.
        _notify(conn, {"t": "reorg", "chain": chain, "from": ancestor + 1, "to": expected[0], "hash": ancestor_hash})
