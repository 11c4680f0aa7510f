"""Reads on Postgres streaming replicas (`database.read_url`), the primary when none is healthy.

`Router` holds one pool (gqlapi.db.Database) per replica plus the primary's. A request's session takes one pool
for its whole life, so all its statements read one snapshot on one server; `_meta` reads the indexer cursor in
that snapshot, so it reports the block the replica has replayed, never more than the data shows.

Health, checked every `database.replica_check_s` on a connection of its own per replica: a replica is healthy when
it answers, is in recovery (a standby), and its replay lag is within `database.replica_max_lag_s`. Lag is judged by
WAL position, not `pg_last_xact_replay_timestamp()` (which grows without bound on an idle primary): the monitor
samples the primary's `pg_current_wal_flush_lsn()` (only flushed WAL is streamed) with the time it read it; a replica
whose `pg_last_wal_replay_lsn()` is behind is late by at least the age of the oldest sample it has not replayed.
When the primary cannot be asked, a replica that answers is judged by reachability alone (reads survive a primary
outage).

Choice: the healthy replica with the fewest connections in use, round robin among equals. A request whose first
query cannot connect to its replica marks that replica down and moves to the next choice (nothing was read yet);
one that already read from it fails as on the primary. A standby may cancel a query whose snapshot holds up its
replay (conflict with recovery, after max_standby_streaming_delay): POST /graphql re-asks the primary
(gqlapi.endpoint), elsewhere it is SERVICE_BUSY, to retry. A `block` argument above what the replica replayed (a
client pinning the block it last saw) is re-asked on the primary the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

import psycopg

from gqlapi.db import Database, Session
from store.engine import libpq_url

log = logging.getLogger("gqlapi.replicas")


def replica_name(url: str) -> str:
    """host:port/db of a URL: what /ready, /metrics and logs show (never the user or password)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        d = conninfo_to_dict(libpq_url(url))
    except Exception:  # noqa: BLE001 - an unreadable URL is named without its text
        return "replica"
    host = d.get("host") or "localhost"
    return f"{host}:{d.get('port') or 5432}/{d.get('dbname') or ''}"


def _lsn(text: str | None) -> int | None:
    """'16/B374D848' -> an integer (pg_lsn's text form); None stays None."""
    if not text:
        return None
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


class Replica:
    """One read replica: its pool and what the last check found."""

    def __init__(self, url: str, pool: Database) -> None:
        self.name = replica_name(url)
        self.conninfo = libpq_url(url)
        self.db = pool
        self.healthy = False  # until the first check says otherwise
        self.reason = "not checked yet"
        self.lag_s: float | None = None
        self.lag_bytes: int | None = None
        self.monitor: psycopg.AsyncConnection | None = None

    def busy(self) -> int:
        return self.db._size - len(self.db._idle)

    def down(self, reason: str) -> None:
        if self.healthy:
            log.warning("read replica unhealthy; reads go elsewhere", extra={"replica": self.name, "reason": reason})
        self.healthy, self.reason = False, reason

    def up(self) -> None:
        if not self.healthy:
            log.info("read replica healthy; reading from it", extra={"replica": self.name})
        self.healthy, self.reason = True, "ok"

    def status(self) -> dict[str, Any]:
        return {"healthy": self.healthy, "reason": self.reason,
                "lag_s": None if self.lag_s is None else round(self.lag_s, 3), "lag_bytes": self.lag_bytes}


class Router:
    """The pools a request may read from (see the module docstring). Quacks like Database where the app uses one:
    `session()`, `open()`, `close()`, `ping()`, `statements`."""

    def __init__(self, primary: Database, replica_urls: list[str], *, max_lag_s: float = 10.0, check_s: float = 2.0,
                 generic_plans: bool = True, connect_timeout_s: float = 5.0) -> None:
        self.primary = primary
        self.max_lag_s, self.check_s, self.connect_timeout_s = max_lag_s, check_s, connect_timeout_s
        self.replicas = []
        for u in replica_urls:
            pool = Database(u, primary.statement_timeout_ms, min_size=0, max_size=primary.max_size,
                            generic_plans=generic_plans)
            pool.kwargs["connect_timeout"] = max(1, int(connect_timeout_s))  # a black-holed replica fails, not hangs
            self.replicas.append(Replica(u, pool))
        self._next = 0
        self._samples: deque[tuple[float, int]] = deque(maxlen=512)  # (monotonic time, primary WAL LSN)
        self._primary_conn: psycopg.AsyncConnection | None = None
        self._task: asyncio.Task | None = None
        self.primary_reads = 0  # sessions given the primary while replicas are configured (metrics)
        self.checks = 0  # health rounds done

    @property
    def statements(self) -> int:
        return self.primary.statements + sum(r.db.statements for r in self.replicas)

    @property
    def statement_timeout_ms(self) -> int:
        return self.primary.statement_timeout_ms

    # -- lifecycle -------------------------------------------------------------------------------------------
    async def open(self) -> None:
        await self.primary.open()
        if self.replicas:
            await self.check()
            self._task = asyncio.create_task(self._watch(), name="replica-monitor")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        for conn in [self._primary_conn, *(r.monitor for r in self.replicas)]:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
        self._primary_conn = None
        for r in self.replicas:
            r.monitor = None
            await r.db.close()
        await self.primary.close()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.check_s)
            try:
                await self.check()
            except Exception:  # noqa: BLE001 - the monitor must outlive any surprise; the next round retries
                log.debug("replica check failed", exc_info=True)

    # -- health ----------------------------------------------------------------------------------------------
    async def _connect(self, conninfo: str) -> psycopg.AsyncConnection:
        return await asyncio.wait_for(psycopg.AsyncConnection.connect(
            conninfo, autocommit=True, connect_timeout=max(1, int(self.connect_timeout_s)),
            application_name="carbonledger-api-monitor"), self.connect_timeout_s + 1)

    async def _primary_lsn(self) -> int | None:
        try:
            if self._primary_conn is None or self._primary_conn.broken:
                self._primary_conn = await self._connect(self.primary.conninfo)
            row = await (await self._primary_conn.execute(
                "SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_flush_lsn()::text END")).fetchone()
            return _lsn(row[0]) if row else None
        except Exception:  # noqa: BLE001 - the primary's own health is /ready's `database`
            if self._primary_conn is not None:
                with contextlib.suppress(Exception):
                    await self._primary_conn.close()
            self._primary_conn = None
            return None

    async def check(self) -> None:
        """Check every replica once (in parallel) against a fresh sample of the primary's WAL position."""
        now = time.monotonic()
        lsn = await self._primary_lsn()
        if lsn is not None and (not self._samples or self._samples[-1][1] != lsn):
            self._samples.append((now, lsn))
        await asyncio.gather(*(self._check(r, lsn is not None) for r in self.replicas))
        self.checks += 1

    def _lag(self, replayed: int) -> tuple[float, int]:
        """(seconds, bytes) a replica that replayed up to `replayed` is behind the latest primary sample."""
        if not self._samples or replayed >= self._samples[-1][1]:
            return 0.0, 0
        oldest_missing = next(t for t, s in self._samples if s > replayed)  # samples only grow
        return time.monotonic() - oldest_missing, self._samples[-1][1] - replayed

    async def _check(self, r: Replica, primary_known: bool) -> None:
        try:
            if r.monitor is None or r.monitor.broken:
                r.monitor = await self._connect(r.conninfo)
            row = await asyncio.wait_for((await r.monitor.execute(
                "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text")).fetchone(), self.connect_timeout_s)
        except Exception as exc:  # noqa: BLE001 - unreachable: its kind only (libpq text may quote the URL)
            if r.monitor is not None:
                with contextlib.suppress(Exception):
                    await r.monitor.close()
            r.monitor = None
            r.lag_s = r.lag_bytes = None
            r.down(f"unreachable ({type(exc).__name__})")
            return
        in_recovery, replayed = row[0], _lsn(row[1])
        if not in_recovery:
            r.lag_s = r.lag_bytes = None
            r.down("not a standby (pg_is_in_recovery() is false): refusing to read a server the indexer does not write")
            return
        if primary_known and replayed is not None:
            r.lag_s, r.lag_bytes = self._lag(replayed)
            if r.lag_s > self.max_lag_s:
                r.down(f"replay lag {r.lag_s:.1f} s over database.replica_max_lag_s ({self.max_lag_s:g} s)")
                return
        else:
            r.lag_s = r.lag_bytes = None
        r.up()

    def status(self) -> dict[str, dict[str, Any]]:
        """replica name -> its health, lag and reason (no credentials)."""
        return {r.name: r.status() for r in self.replicas}

    # -- choosing --------------------------------------------------------------------------------------------
    def choose(self, skip: Any = ()) -> Database:
        """The healthy replica's pool with the fewest connections in use (round robin among equals), else the
        primary's."""
        best, best_busy = None, None
        n = len(self.replicas)
        start = self._next
        for i in range(n):
            r = self.replicas[(start + i) % n]
            if r.healthy and r.db not in skip:
                busy = r.busy()
                if best_busy is None or busy < best_busy:
                    best, best_busy = r, busy
        if best is None:
            self.primary_reads += 1
            return self.primary
        self._next = (self.replicas.index(best) + 1) % n
        return best.db

    def session(self, single: bool = False, deadline: float | None = None, budget_ms: int = 0, *,
                primary: bool = False) -> Session:
        """A request's session on one server (`primary`: on the primary, e.g. reads that must see every commit)."""
        if not self.replicas or primary:
            return self.primary.session(single, deadline, budget_ms)
        return RoutedSession(self, self.choose(), single, deadline, budget_ms)

    def replica_failed(self, pool: Database, exc: BaseException) -> None:
        for r in self.replicas:
            if r.db is pool:
                r.down(f"unreachable ({type(exc).__name__})")

    async def ping(self) -> bool:
        """The primary answers (replicas are reported apart: reads fall back to the primary)."""
        return await self.primary.ping()

    def any_healthy(self) -> bool:
        return any(r.healthy for r in self.replicas)


class RoutedSession(Session):
    """A Session whose first connection may come from a replica that turns out to be down: then (nothing read yet)
    it marks the replica down and takes the next choice, the primary last."""

    def __init__(self, router: Router, db: Database, single: bool, deadline: float | None, budget_ms: int) -> None:
        super().__init__(db, single, deadline, budget_ms)
        self.router = router

    @property
    def on_replica(self) -> bool:  # type: ignore[override]
        return self.db is not self.router.primary

    async def _acquire(self) -> psycopg.AsyncConnection:
        tried: list[Database] = []
        while True:
            try:
                return await super()._acquire()
            except psycopg.OperationalError as exc:
                if self.db is self.router.primary:
                    raise
                self.router.replica_failed(self.db, exc)
                tried.append(self.db)
                self.db = self.router.choose(skip=tried)
