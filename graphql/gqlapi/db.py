"""Postgres access: one pool of snapshot-ready connections per process, one read-only snapshot per request.

Every request that touches the database borrows one connection on its first query and runs all its queries
(root fields and DataLoaders) in one REPEATABLE READ READ ONLY transaction, so nested data can never mix two
indexer commits.

Round trips are the API's main fixed cost besides Python itself (each is ~0.1 ms of client CPU in psycopg's async
path plus ~0.1 ms of Postgres CPU, measured in bench/api.py's setting), so:
- A connection can wait in the pool *inside* a fresh `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`
  (Postgres takes the snapshot at the first query, so a waiting connection holds no snapshot, no xmin and no
  lock); giving it back sends `COMMIT; BEGIN ...` as one simple-protocol message, after the response is sent.
- A request whose document is known to run a single statement needs no transaction at all (one statement sees
  one snapshot): it runs on a connection waiting outside a transaction, which goes back with no round trip.
  `Session(single=True)` refuses a second statement on such a connection with `NeedsSnapshot`; the endpoint then
  re-runs the request with a snapshot and remembers that its document needs one (gqlapi.endpoint).
Connections move between the two kinds as the mix of requests asks. psycopg_pool cannot hold connections
inside a transaction (it rolls back every returned connection), hence this small pool. A waiting connection
that died (server restart, network) is replaced transparently on a request's first query, when nothing has been
read from it yet.

Statement timeout and read-only mode are per connection (libpq `options`); psycopg prepares repeated statements
itself (prepare_threshold), and with `api.generic_plans` Postgres plans each once per connection: the DataLoader
queries take their keys as arrays (`unnest(%s::text[], ...)`), for which Postgres otherwise judges a custom plan
cheaper every time and re-plans on every request (~0.3 ms of Postgres CPU each, measured). Rows come back as
dicts, integral NUMERICs (uint256 amounts and ids) as Python ints.
"""

from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.adapt import Loader
from psycopg.rows import dict_row

from gqlapi.convert import bad_text
from gqlapi.errors import SERVICE_BUSY, STATEMENT_TIMEOUT, ReplicaConflict, RequestTimeout, UserError
from store.engine import libpq_url

log = logging.getLogger("gqlapi.db")

_BEGIN = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
_IDLE, _INTRANS = psycopg.pq.TransactionStatus.IDLE, psycopg.pq.TransactionStatus.INTRANS
# A connection waiting in the pool inside its transaction holds no snapshot; one a bug left inside a *used*
# transaction would hold back vacuum: Postgres ends such a session after this long (a waiting connection it
# closed is replaced on its next use, see Session.fetch).
_IDLE_IN_TX_MS = 300_000
# COMMIT, not ROLLBACK: the transaction is read-only, so both end it alike, but psycopg forgets every prepared
# statement of a connection when it sees a ROLLBACK command (psycopg/_preparing.py, _should_discard), and
# re-planning is most of Postgres's work for these queries (the provenance query: ~3 ms to plan, ~0.2 ms to run).
_RENEW = f"COMMIT; {_BEGIN}"


class _IntNumericLoader(Loader):
    """NUMERIC (text) -> int when integral, else Decimal: our uint256 columns never carry fractions, and an int
    saves building and converting a Decimal per value."""

    def load(self, data: Any) -> int | Decimal:
        raw = bytes(data)
        try:
            return int(raw)
        except ValueError:
            return Decimal(raw.decode())


def _check_text(params: Any) -> None:
    """Refuse text Postgres cannot take (NUL, lone surrogates) as a client error before it becomes a driver error:
    arguments are checked where they enter (gqlapi.guard); this also covers text derived from them (cursors)."""
    if not params:
        return
    for v in params.values() if isinstance(params, dict) else params:
        if v.__class__ is str and bad_text(v):
            raise UserError(f"an argument {bad_text(v)}, which no argument accepts")


class PoolTimeout(Exception):
    pass


class NeedsSnapshot(Exception):
    """A single-statement session was asked for a second statement outside a transaction."""


class Database:
    """The process-wide connection pool; `statements` counts data queries (tests assert on it)."""

    def __init__(self, url: str, statement_timeout_ms: int = 5000, min_size: int = 1, max_size: int = 10,
                 generic_plans: bool = True) -> None:
        self.statement_timeout_ms = statement_timeout_ms
        self.statements = 0
        self.conninfo = libpq_url(url)
        self.min_size, self.max_size = min_size, max_size
        self.kwargs = {
            "autocommit": True,
            "row_factory": dict_row,
            "prepare_threshold": 2,
            "options": f"-c statement_timeout={int(statement_timeout_ms)} -c default_transaction_read_only=on "
                       f"-c idle_in_transaction_session_timeout={_IDLE_IN_TX_MS}"
                       + (" -c plan_cache_mode=force_generic_plan" if generic_plans else ""),
            "application_name": "carbonledger-api",
        }
        self._idle: list[psycopg.AsyncConnection] = []
        self._size = 0  # connections open or being opened
        self._freed = asyncio.Condition()
        self._waiting = 0
        self._closed = False
        self._renewing: set[asyncio.Task] = set()

    async def open(self) -> None:
        """Open `min_size` connections; a database that is not reachable yet is logged, not fatal (connections
        are opened on demand and /ready reports the database until then)."""
        self._closed = False
        for _ in range(self.min_size):
            try:
                self._idle.append(await asyncio.wait_for(self._connect(), 30))
            except Exception as e:  # noqa: BLE001
                log.warning("database not reachable yet (%s); connecting on demand", type(e).__name__)
                break

    async def close(self) -> None:
        self._closed = True
        while self._renewing:  # a renewal may wake a waiter, which is one more task
            await asyncio.gather(*list(self._renewing), return_exceptions=True)
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()
        self._size -= len(idle)

    async def _connect(self, in_transaction: bool = True) -> psycopg.AsyncConnection:
        self._size += 1
        try:
            conn = await psycopg.AsyncConnection.connect(self.conninfo, **self.kwargs)
            conn.adapters.register_loader("numeric", _IntNumericLoader)
        except BaseException:
            self._size -= 1
            self._wake()
            raise
        try:
            if in_transaction:
                await conn.execute(_BEGIN)
            return conn
        except BaseException:
            self._size -= 1
            self._wake()
            await conn.close()
            raise

    async def acquire(self, timeout: float = 10, *, in_transaction: bool = True) -> psycopg.AsyncConnection:
        """A waiting connection, preferably of the asked kind (inside a fresh snapshot transaction, or not)."""
        async with self._freed:
            deadline = asyncio.get_running_loop().time() + timeout
            while not self._idle and self._size >= self.max_size:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    raise PoolTimeout
                self._waiting += 1
                try:
                    await asyncio.wait_for(self._freed.wait(), left)
                except asyncio.TimeoutError:
                    raise PoolTimeout from None
                finally:
                    self._waiting -= 1
            idle = self._idle
            if idle:
                for i in range(len(idle) - 1, -1, -1):
                    if (idle[i].info.transaction_status == _INTRANS) == in_transaction:
                        return idle.pop(i)
                return idle.pop()
        return await self._connect(in_transaction)

    def release(self, conn: psycopg.AsyncConnection, *, broken: bool = False, in_transaction: bool = True) -> None:
        """Give a connection back: one outside a transaction at once; one inside ends it and, for the next
        snapshot request, begins a fresh one (`in_transaction`) in the background."""
        if not broken and not self._closed and not conn.broken and conn.info.transaction_status == _IDLE \
                and not in_transaction:
            self._idle.append(conn)
            self._wake()
            return
        self._background(self._renew(conn, broken, in_transaction))

    def _background(self, work: Any) -> None:
        """Run `work` as a task the pool keeps (close() waits for them; unreferenced tasks may be collected)."""
        task = asyncio.get_running_loop().create_task(work)
        self._renewing.add(task)
        task.add_done_callback(self._renewing.discard)

    def _wake(self) -> None:
        """Wake a waiter (if any) for a connection or a free slot."""
        if self._waiting:
            self._background(self._notify())

    async def _notify(self) -> None:
        async with self._freed:
            self._freed.notify()

    async def _renew(self, conn: psycopg.AsyncConnection, broken: bool, in_transaction: bool = True) -> None:
        ok = False
        if not broken and not self._closed and not conn.broken:
            try:
                if conn.info.transaction_status != _IDLE:
                    await conn.execute(_RENEW if in_transaction else "COMMIT")
                elif in_transaction:
                    await conn.execute(_BEGIN)
                ok = True
            except Exception:  # noqa: BLE001 - a broken connection is dropped, a new one opened on demand
                log.debug("renewing a connection failed", exc_info=True)
        if not ok:
            self._size -= 1
            try:
                await conn.close()
            except Exception:  # noqa: BLE001
                pass
        async with self._freed:
            if ok:
                self._idle.append(conn)
            self._freed.notify()

    def session(self, single: bool = False, deadline: float | None = None, budget_ms: int = 0) -> "Session":
        """A request's session; no statement starts after `deadline` (time.monotonic())."""
        return Session(self, single, deadline, budget_ms)

    async def ping(self) -> bool:
        s = self.session()
        try:
            await s.fetch("SELECT 1", count=False)
            return True
        except Exception:  # noqa: BLE001 - readiness is a yes/no
            return False
        finally:
            await s.close()


class Session:
    """One request's view of the database: a lazily borrowed connection in a read-only snapshot, or, for a
    `single`-statement request, one statement outside a transaction."""

    on_replica = False  # gqlapi.replicas.RoutedSession: whether it reads a replica

    def __init__(self, db: Database, single: bool = False, deadline: float | None = None, budget_ms: int = 0) -> None:
        self.db = db
        self.single = single
        self.deadline, self.budget_ms = deadline, budget_ms
        self.statements = 0
        self._conn: psycopg.AsyncConnection | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    async def fetch(self, sql: str, params: Any = None, *, count: bool = True) -> list[dict[str, Any]]:
        """Run one query in this request's snapshot and return all rows as dicts."""
        async with self._lock:  # loaders may resolve concurrently; one connection runs one query at a time
            if self._closed:  # e.g. a DataLoader batch still running after its request ended
                raise UserError("the request has ended")
            if self.deadline is not None and time.monotonic() > self.deadline:
                raise RequestTimeout(self.budget_ms)
            _check_text(params)
            if self._conn is not None:
                if self.single and self._conn.info.transaction_status == _IDLE:
                    raise NeedsSnapshot
                if count:
                    self.statements += 1
                    self.db.statements += 1
                return await self._run(sql, params)
            if count:
                self.statements += 1
                self.db.statements += 1
            # The first query: a connection that died while it waited in the pool (server restart, network) has
            # given this request nothing yet, so drop it and take the next; after a restart all of them are dead.
            for attempt in range(self.db.max_size + 1):
                self._conn = await self._acquire()
                try:
                    if not self.single and self._conn.info.transaction_status == _IDLE:
                        await self._conn.execute(_BEGIN)
                    return await self._run(sql, params)
                except psycopg.OperationalError:
                    if not self._conn.broken or attempt == self.db.max_size:
                        raise
                    self.db.release(self._conn, broken=True)
                    self._conn = None
            raise AssertionError("unreachable")

    async def _acquire(self) -> psycopg.AsyncConnection:
        try:
            return await self.db.acquire(timeout=10, in_transaction=not self.single)
        except PoolTimeout:
            raise UserError("the API has no free database connection right now; retry shortly", SERVICE_BUSY) from None

    async def _run(self, sql: str, params: Any) -> list[dict[str, Any]]:
        try:
            cur = await self._conn.execute(sql, params)  # type: ignore[union-attr, arg-type]
            return await cur.fetchall()  # type: ignore[return-value]
        except psycopg.errors.QueryCanceled:
            raise UserError(
                f"the query took longer than the statement timeout ({self.db.statement_timeout_ms} ms); "
                "ask for fewer items or a narrower range", STATEMENT_TIMEOUT,
            ) from None
        except psycopg.errors.SerializationFailure:  # only a hot standby raises it on read-only snapshots
            raise ReplicaConflict from None

    async def close(self) -> None:
        """End the snapshot and give the connection back (idempotent; a renewal runs in the background).
        Waits for a query in flight; later fetches are refused."""
        self._closed = True
        async with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            self.db.release(conn, in_transaction=not self.single)
