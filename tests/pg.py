"""Postgres for tests: CARBONLEDGER_DATABASE_URL (CI: the local server) or an embedded pgserver.

A template database is migrated once per test session (`alembic upgrade head`, the real path); each test that
asks for `db_url` gets its own copy (CREATE DATABASE ... TEMPLATE), dropped afterwards. Names carry the pid so
parallel sessions on one server never collide.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path

import psycopg

from store.engine import libpq_url

_counter = itertools.count()


def server_url() -> str:
    url = os.environ.get("CARBONLEDGER_TEST_DATABASE_URL") or os.environ.get("CARBONLEDGER_DATABASE_URL")
    if url:
        return libpq_url(url)
    from core.database import embedded_url

    return embedded_url(Path(tempfile.gettempdir()) / "carbonledger-test-pg", "postgres")


def with_database(url: str, name: str) -> str:
    if "?" in url:  # socket form: postgresql://user:@/db?host=...
        head, query = url.split("?", 1)
        return head.rsplit("/", 1)[0] + "/" + name + "?" + query
    return url.rsplit("/", 1)[0] + "/" + name


class PgFactory:
    def __init__(self) -> None:
        self.base = server_url()
        self.prefix = f"cl_{os.getpid()}"
        self.template = f"{self.prefix}_tmpl"
        self._admin = psycopg.connect(self.base, autocommit=True)
        self._made: list[str] = []

    def migrate_template(self) -> None:
        from store.migrate import upgrade

        self._admin.execute(f'DROP DATABASE IF EXISTS "{self.template}"')
        self._admin.execute(f'CREATE DATABASE "{self.template}"')
        upgrade(with_database(self.base, self.template))

    def fresh(self, migrated: bool = True) -> str:
        name = f"{self.prefix}_{next(_counter)}"
        tmpl = f' TEMPLATE "{self.template}"' if migrated else ""
        self._admin.execute(f'CREATE DATABASE "{name}"{tmpl}')
        self._made.append(name)
        return with_database(self.base, name)

    def drop(self, url: str) -> None:
        name = url.split("?", 1)[0].rsplit("/", 1)[1]
        self._admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self._made:
            self._made.remove(name)

    def close(self) -> None:
        for name in list(self._made) + [self.template]:
            self._admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._admin.close()


def invalid_index(conn: psycopg.Connection, name: str, table: str = "ledger_entry", column: str = "chain") -> None:
    """Leave what a CREATE INDEX CONCURRENTLY that failed leaves: an INVALID index `name` (here a unique one over a
    column whose values repeat: `table` needs two rows with one value of `column`). `conn` in autocommit mode."""
    try:
        conn.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {name} ON {table} ({column})")
    except psycopg.errors.UniqueViolation:
        pass
    else:
        raise AssertionError(f"{table}.{column} does not repeat a value: {name} was built valid")
    assert conn.execute("SELECT NOT indisvalid FROM pg_index WHERE indexrelid = %s::regclass", (name,)).fetchone()[0]
