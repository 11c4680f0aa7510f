"""Migrations are stacked: a database at the first revision, with data, is brought forward to exactly the schema the
models describe (test_store checks the same for a fresh database), with what autogenerate cannot see (CHECKs)."""

from __future__ import annotations

import time

import psycopg
import pytest
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


def _ledger_key(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = 'ledger_entry'::regclass AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)")]


def _indexes(conn: psycopg.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'ledger_entry'")}


def test_0010_keys_the_ledger_by_position_and_back(pg_factory):
    """autogenerate does not compare primary keys: 0010's key change is checked here, with rows in the table, both
    ways. A row that repeats a position under another transaction is refused after it, as one that repeated a
    transaction's log was before."""
    from alembic import command

    from store.migrate import alembic_config
    from store.models import LedgerEntry

    url = pg_factory.fresh(migrated=False)
    row = "('c', %s, %s, 0, 1, '0xa', '0xb', '0xc', 5, 'transfer', %s, '0xh', 1700000000)"
    insert = ("INSERT INTO ledger_entry (chain, tx_hash, log_index, seq, batch_id, operator, from_addr, to_addr, amount, "
              f"kind, block_number, block_hash, block_timestamp) VALUES {row}")
    try:
        upgrade(url, "0009")
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            for tx, li, block in (("0x01", 0, 7), ("0x01", 1, 7), ("0x02", 0, 8)):
                conn.execute(insert, (tx, li, block))
            assert _ledger_key(conn) == ["chain", "tx_hash", "log_index", "seq"]
        upgrade(url)
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            assert _ledger_key(conn) == [c.name for c in LedgerEntry.__table__.primary_key.columns] \
                == ["chain", "block_number", "log_index", "seq"]
            assert "ix_ledger_entry_block_number" not in _indexes(conn) and "pk_ledger_entry" in _indexes(conn)
            assert conn.execute("SELECT count(*) FROM ledger_entry").fetchone()[0] == 3
            with pytest.raises(psycopg.errors.UniqueViolation):
                conn.execute(insert, ("0x03", 1, 7))
            conn.execute(insert, ("0x01", 2, 7))  # the same transaction, a new position: fine
            conn.execute("SET enable_seqscan = off")  # a tiny table: show what the undo can use, not what is cheapest
            plan = "\n".join(r[0] for r in conn.execute(
                "EXPLAIN DELETE FROM ledger_entry WHERE chain = 'c' AND block_number > 7").fetchall())
            assert "pk_ledger_entry" in plan and "Index Cond" in plan, plan
        command.downgrade(alembic_config(url), "0009")
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            assert _ledger_key(conn) == ["chain", "tx_hash", "log_index", "seq"]
            assert "ix_ledger_entry_block_number" in _indexes(conn)
            assert conn.execute("SELECT count(*) FROM ledger_entry").fetchone()[0] == 4
        upgrade(url)
        assert _schema_diff(url) == []
    finally:
        pg_factory.drop(url)


def test_0010_waits_for_a_long_read_in_bounded_turns(pg_factory):
    """The key's ALTER needs ledger_entry to itself. Behind a read that holds the table longer than its lock wait it
    gives way (so readers are not queued behind it), says so, and tries again until the read is over."""
    import logging
    import threading

    url = pg_factory.fresh(migrated=False)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler, logger = Keep(), logging.getLogger("alembic.runtime.migration")
    logger.addHandler(handler)
    try:
        upgrade(url, "0009")
        reader = psycopg.connect(libpq_url(url))
        reader.execute("SELECT count(*) FROM ledger_entry")  # its transaction stays open: ACCESS SHARE held
        failed: list[BaseException] = []

        def migrate() -> None:
            try:
                upgrade(url)
            except BaseException as exc:  # noqa: BLE001 - reported below
                failed.append(exc)

        t = threading.Thread(target=migrate)
        t.start()
        deadline = time.monotonic() + 120
        while not any("busy" in r.getMessage() for r in records):  # at least one turn given way
            assert time.monotonic() < deadline and t.is_alive(), failed
            time.sleep(0.05)
        reader.rollback()
        reader.close()
        t.join(120)
        assert not t.is_alive() and not failed, failed
        with psycopg.connect(libpq_url(url)) as conn:
            assert _ledger_key(conn) == ["chain", "block_number", "log_index", "seq"]
    finally:
        logger.removeHandler(handler)
        pg_factory.drop(url)
