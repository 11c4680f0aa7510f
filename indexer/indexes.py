"""Cold backfill: the secondary indexes of the event and entity tables are built once after catching up, not row
by row.

Postgres maintains every index of a table on each COPY row; ledger_entry had five besides its primary key, and a
binary COPY into it runs ~2.7x faster without them (measured: 37-41k vs 106-111k rows/s on the 2-core box). A
sort-based CREATE INDEX over the finished table costs far less than that maintenance. So an indexer that starts on a
database with no event or entity rows at all (its first run, or after `reset` of the only chain) drops the
non-unique secondary indexes of those tables, backfills, and builds them again (`CREATE INDEX IF NOT EXISTS`, the
definitions of store.models) before it reports caught up. Unique indexes and primary keys stay: they guard
invariants (one certificate id, one payment reference, one anchor root) and the idempotence of replays.

The entity (versioned) tables count most: a backfill writes ~1.3 holding versions per event and later closes each
one with an UPDATE of `valid_to`, which the partial "current" indexes name, so each version cost eight index
entries (four on insert, four again on the update) where the primary key alone costs two. What the indexer asks of
those tables during a backfill goes by the primary key (chain, key, valid_from): closing a version exactly; a cache
miss and the close of a lazily cached entity read that entity's versions by the key prefix (only when a table holds
more current rows than the cache keeps); `StateCache.load` reads them whole either way. A reorg undo would scan,
but a backfill covers finalized blocks only and `step()` builds the indexes before it follows the head. Other
readers scan meanwhile (the oracle keeper's auction query, live subscriptions' range reads), as they did the event
tables.

Measured (bench/backfill.py, 200k events, interleaved, load 1.0-1.4): 24.5-27.5k against 21.3-24.6k events/s,
Postgres 15.3-18.8 against 19.6-21.8 us of CPU per event, the index builds at the end included.

Crash-safe without any state of its own: the catalog is the state. Whenever a sync loads and finds a deferrable
index missing, it builds the missing ones once it has caught up, whoever dropped them. Until then API queries on
those tables scan rather than seek (slow on a big table, never wrong): the indexer is not ready anyway.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex

from indexer.lease import lock_key
from store import models

log = logging.getLogger("carbonledger.indexer")

_TABLES = [m.__table__ for m in [*models.EVENT_TABLES, models.IndexingError, *models.VERSIONED_TABLES]]
BUILD_LOCK = lock_key("*", "indexes")  # one for every chain of the database (build)
DEFERRABLE = {ix.name: ix for t in _TABLES for ix in sorted(t.indexes, key=lambda i: i.name) if not ix.unique}


# Indexes an earlier release defined and a migration dropped (0009: ix_ledger_entry_to; 0010:
# ix_ledger_entry_block_number, which the ledger's key now serves; 0011: ix_ledger_entry_to_batch and
# ix_ledger_entry_from, now ix_ledger_entry_receiver and ix_ledger_entry_sender with the chain last). An indexer of
# that release still running when the migration ran builds one again once it finds it missing (after a reorg, a lost
# race or a takeover), so this release's indexer drops them when it loads.
OBSOLETE = ("ix_ledger_entry_to", "ix_ledger_entry_block_number", "ix_ledger_entry_to_batch", "ix_ledger_entry_from")


# What the catalog says of an index of ours: usable; INVALID (left by a CREATE INDEX CONCURRENTLY that failed, in a
# migration or by hand: neither used nor kept up to date); or being built CONCURRENTLY by another session right now
# (a migration): INVALID too until that build ends, and not ours to drop.
VALID, INVALID, BUILDING = "valid", "invalid", "building"


def _catalog(conn: psycopg.Connection, names: object) -> dict[str, str]:
    """The indexes of `names` present, by name: VALID, INVALID or BUILDING. pg_indexes lists all three alike. A build
    in progress is told apart by its row in pg_stat_progress_create_index, whose index_relid Postgres shows to the
    building session's own role, superusers and pg_read_all_stats; run migrations as the indexer's role (or grant
    it pg_read_all_stats), or the indexer takes such an index for a failed one (docs/deploy.md)."""
    return dict(conn.execute(
        "SELECT c.relname, CASE WHEN i.indisvalid THEN 'valid' WHEN EXISTS (SELECT 1 FROM "
        "pg_stat_progress_create_index p WHERE p.index_relid = i.indexrelid) THEN 'building' ELSE 'invalid' END "
        "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relname = ANY(%s)", (list(names),)).fetchall())


def drop_obsolete(conn: psycopg.Connection) -> None:
    """Drop the OBSOLETE indexes present (CONCURRENTLY: readers are not blocked); `conn` in autocommit mode."""
    for name in _catalog(conn, OBSOLETE):
        conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        log.info("obsolete index dropped", extra={"index": name})


def _missing(have: dict[str, str]) -> list[str]:
    return [n for n in DEFERRABLE if have.get(n) != VALID]


def missing(conn: psycopg.Connection) -> list[str]:
    """Deferrable indexes not usable yet: absent (dropped by a cold backfill that has not finished), INVALID, or
    being built CONCURRENTLY by another session."""
    return _missing(_catalog(conn, DEFERRABLE))


def cold(conn: psycopg.Connection) -> bool:
    """No event or entity rows of any chain: nothing would be slower without the indexes but the backfill about to start."""
    return not any(conn.execute(f"SELECT EXISTS (SELECT 1 FROM {t.name})").fetchone()[0] for t in _TABLES)


def drop(conn: psycopg.Connection) -> bool:
    """Drop the deferrable indexes in one transaction; False (nothing dropped) if a reader's lock is in the way
    or rows arrived meanwhile (another chain's indexer)."""
    try:
        with conn.transaction():
            conn.execute("SET LOCAL lock_timeout = '2s'")
            for t in _TABLES:  # locks first, then look again: a writer may have committed rows since cold()
                conn.execute(f"LOCK TABLE {t.name} IN SHARE ROW EXCLUSIVE MODE")
            if not cold(conn):
                return False
            for name in DEFERRABLE:
                conn.execute(f"DROP INDEX IF EXISTS {name}")
    except psycopg.errors.LockNotAvailable:
        log.info("event or entity tables busy; backfilling with their indexes in place")
        return False
    log.info("cold backfill: secondary indexes of the event and entity tables are built after catching up",
             extra={"indexes": len(DEFERRABLE)})
    return True


def build(conn: psycopg.Connection, chain: str, *more: psycopg.Connection) -> list[str]:
    """Create what `missing` names, one statement each (a crash between them leaves the rest missing, built by
    the next start), except those another session is building CONCURRENTLY: their names are returned, for the
    caller to call again later (dropping one would cancel a migration's work, and waiting for it here would hold
    the loop for as long as that build takes). Each connection in `more` (idle ones of the same database) builds
    alongside `conn`: CREATE INDEX takes a SHARE lock, which does not conflict with itself, and one build keeps
    about one core busy (a backfill of 200k events spent 1.5 s here on one connection, ~20% of its time). Indexers
    of several chains on one database take turns (a session advisory lock): two CREATE INDEX of one name may run
    together, and Postgres then fails the second with a unique violation on its catalog; the second waits and
    finds nothing left to build."""
    conn.execute("SELECT pg_advisory_lock(%s)", (BUILD_LOCK,))  # released below, or when the session ends
    try:
        return _build(conn, chain, more)
    finally:
        if not conn.closed and not conn.broken:
            conn.execute("SELECT pg_advisory_unlock(%s)", (BUILD_LOCK,))


def _build(conn: psycopg.Connection, chain: str, more: tuple[psycopg.Connection, ...]) -> list[str]:
    have = _catalog(conn, DEFERRABLE)  # read under the lock: what another indexer built meanwhile is not built again
    pending = _missing(have)
    building = [n for n in pending if have.get(n) == BUILDING]
    names = [n for n in pending if have.get(n) != BUILDING]
    invalid = {n for n, state in have.items() if state == INVALID}
    t0 = time.monotonic()
    todo = sorted(names, key=lambda n: DEFERRABLE[n].table.name != "ledger_entry")  # the big table's first
    lock = threading.Lock()

    def work(c: psycopg.Connection) -> None:
        while True:
            with lock:
                if not todo:
                    return
                name = todo.pop(0)
            if name in invalid:  # CREATE INDEX IF NOT EXISTS would keep it
                c.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")  # readers go on
                log.info("invalid index dropped to be built again", extra={"index": name})
            c.execute(str(CreateIndex(DEFERRABLE[name], if_not_exists=True).compile(dialect=postgresql.dialect())))

    conns = [conn, *more][: max(1, len(names))]
    if len(conns) == 1:
        work(conn)
    else:
        with ThreadPoolExecutor(len(conns) - 1, thread_name_prefix=f"index-{chain}") as pool:
            helpers = [pool.submit(work, c) for c in conns[1:]]
            work(conn)
            for f in helpers:
                f.result()
    if names:
        log.info("secondary indexes built", extra={"chain": chain, "indexes": len(names), "connections": len(conns),
                                                   "seconds": round(time.monotonic() - t0, 2)})
    return building
