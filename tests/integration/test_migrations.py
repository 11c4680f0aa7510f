"""Migrations are stacked: a database at the first revision, with data, is brought forward to exactly the schema the
models describe (test_store checks the same for a fresh database), with what autogenerate cannot see (CHECKs)."""

from __future__ import annotations

import psycopg
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, pool

from store.base import Base
from store.engine import libpq_url, sqlalchemy_url
from store.migrate import upgrade


def _schema_diff(url: str) -> list:
    import store.models  # noqa: F401 - register every table
    import store.outbox  # noqa: F401

    eng = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    with eng.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    eng.dispose()
    return diff


def test_a_database_at_the_first_revision_is_brought_forward(pg_factory):
    url = pg_factory.fresh(migrated=False)
    try:
        upgrade(url, "0001")
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            conn.execute("INSERT INTO indexer_cursor (chain, block_number, block_hash) VALUES ('dev', 5, '0xab')")
        upgrade(url)
        with psycopg.connect(libpq_url(url)) as conn:
            assert conn.execute("SELECT block_number, genesis_hash FROM indexer_cursor").fetchone() == (5, None)
        assert _schema_diff(url) == []
        with psycopg.connect(libpq_url(url)) as conn:  # not seen by autogenerate: the four-eyes CHECK
            assert conn.execute("SELECT 1 FROM pg_constraint WHERE conname = 'ck_oracle_verification_four_eyes'").fetchone()
    finally:
        pg_factory.drop(url)
