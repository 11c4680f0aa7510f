"""Postgres access: one async pool per process, one read-only snapshot per request.

Every request that touches the database borrows one pooled connection on its first query and runs all its
queries (root fields and DataLoaders) in one REPEATABLE READ READ ONLY transaction, so nested data can never
mix two indexer commits. The statement timeout is set per connection (libpq `options`), psycopg prepares
repeated statements itself (prepare_threshold), and rows come back as dicts for the types' from_row().
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from gqlapi.errors import UserError
from store.engine import libpq_url

log = logging.getLogger("gqlapi.db")


class Database:
    """The process-wide AsyncConnectionPool; `statements` counts data queries (tests assert on it)."""

    def __init__(self, url: str, statement_timeout_ms: int = 5000, min_size: int = 1, max_size: int = 10) -> None:
        self.statement_timeout_ms = statement_timeout_ms
        self.statements = 0
        self.pool = AsyncConnectionPool(
            libpq_url(url),
            min_size=min_size,
            max_size=max_size,
            open=False,
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                "prepare_threshold": 2,
                "options": f"-c statement_timeout={int(statement_timeout_ms)} -c default_transaction_read_only=on",
                "application_name": "carbonledger-api",
            },
        )

    async def open(self) -> None:
        await self.pool.open(wait=True, timeout=30)

    async def close(self) -> None:
        await self.pool.close()

    def session(self) -> "Session":
        return Session(self)

    async def ping(self) -> bool:
        try:
            async with self.pool.connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - readiness is a yes/no
            return False


class Session:
    """One request's view of the database: a lazily borrowed connection in a read-only snapshot."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.statements = 0
        self._conn: psycopg.AsyncConnection | None = None
        self._lock = asyncio.Lock()

    async def fetch(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        """Run one query in this request's snapshot and return all rows as dicts."""
        async with self._lock:  # loaders may resolve concurrently; one connection runs one query at a time
            if self._conn is None:
                try:
                    self._conn = await self.db.pool.getconn(timeout=10)
                except PoolTimeout:
                    raise UserError("the API has no free database connection right now; retry shortly") from None
                await self._conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            self.statements += 1
            self.db.statements += 1
            try:
                cur = await self._conn.execute(sql, params)  # type: ignore[arg-type]
                return await cur.fetchall()  # type: ignore[return-value]
            except psycopg.errors.QueryCanceled:
                raise UserError(
                    f"the query took longer than the statement timeout ({self.db.statement_timeout_ms} ms); "
                    "ask for fewer items or a narrower range"
                ) from None

    async def close(self) -> None:
        """End the snapshot and give the connection back (idempotent)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            await conn.execute("ROLLBACK")
        except Exception:  # noqa: BLE001 - the pool checks and discards broken connections
            log.debug("rollback failed", exc_info=True)
        await self.db.pool.putconn(conn)
