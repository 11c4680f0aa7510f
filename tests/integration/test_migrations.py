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
from tests.pg import invalid_index


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


_LEDGER_INSERT = ("INSERT INTO ledger_entry (chain, tx_hash, log_index, seq, batch_id, operator, from_addr, to_addr, "
                  "amount, kind, block_number, block_hash, block_timestamp) "
                  "VALUES ('c', %s, %s, 0, 1, '0xa', %s, %s, 5, 'transfer', %s, '0xh', 1700000000)")


def _ledger_row(conn: psycopg.Connection, tx: str, log_index: int, block: int, frm: str = "0xb", to: str = "0xc") -> None:
    conn.execute(_LEDGER_INSERT, (tx, log_index, frm, to, block))


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
    try:
        upgrade(url, "0009")
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            for tx, li, block in (("0x01", 0, 7), ("0x01", 1, 7), ("0x02", 0, 8)):
                _ledger_row(conn, tx, li, block)
            assert _ledger_key(conn) == ["chain", "tx_hash", "log_index", "seq"]
        upgrade(url)
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            assert _ledger_key(conn) == [c.name for c in LedgerEntry.__table__.primary_key.columns] \
                == ["chain", "block_number", "log_index", "seq"]
            assert "ix_ledger_entry_block_number" not in _indexes(conn) and "pk_ledger_entry" in _indexes(conn)
            assert conn.execute("SELECT count(*) FROM ledger_entry").fetchone()[0] == 3
            with pytest.raises(psycopg.errors.UniqueViolation):
                _ledger_row(conn, "0x03", 1, 7)
            _ledger_row(conn, "0x01", 2, 7)  # the same transaction, a new position: fine
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


def _ledger_index_columns(conn: psycopg.Connection) -> dict[str, str]:
    return {r[0]: r[1].split("(", 1)[1].rstrip(")") for r in conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'ledger_entry'")}


def test_0011_puts_the_chain_last_in_the_trace_indexes_and_back(pg_factory):
    """0011 replaces the custody trace's two ledger indexes by ones that lead with the address and name the chain
    last, with rows in the table, and back. The trace's lookups seek on the new ones and check the chain in them."""
    from alembic import command

    from store.migrate import alembic_config

    url = pg_factory.fresh(migrated=False)
    old = {"ix_ledger_entry_to_batch": "chain, to_addr, batch_id, block_number",
           "ix_ledger_entry_from": "chain, from_addr, block_number"}
    new = {"ix_ledger_entry_receiver": "to_addr, batch_id, block_number, chain",
           "ix_ledger_entry_sender": "from_addr, block_number, chain"}
    try:
        upgrade(url, "0010")
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            for i in range(3):
                _ledger_row(conn, f"0x0{i}", i, 7 + i, f"0xf{i}", f"0xt{i}")
            have = _ledger_index_columns(conn)
            assert {k: have.get(k) for k in old} == old and not set(new) & set(have)
        upgrade(url)
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            have = _ledger_index_columns(conn)
            assert {k: have.get(k) for k in new} == new and not set(old) & set(have)
            assert conn.execute("SELECT count(*) FROM ledger_entry").fetchone()[0] == 3
            conn.execute("SET enable_seqscan = off")  # a tiny table: show what the trace can use
            for index, cond in (("ix_ledger_entry_receiver", "to_addr = '0xt1' AND batch_id = 1"),
                                ("ix_ledger_entry_sender", "from_addr = '0xf1'")):
                plan = "\n".join(r[0] for r in conn.execute(
                    f"EXPLAIN SELECT block_number FROM ledger_entry WHERE chain = 'c' AND {cond} "
                    "AND block_number <= 9").fetchall())
                assert index in plan and "Index Cond" in plan, plan
            assert conn.execute("SELECT count(*) FROM ledger_entry WHERE chain = 'c' AND to_addr = '0xt1' "
                                "AND batch_id = 1 AND block_number <= 9").fetchone()[0] == 1
            assert conn.execute("SELECT count(*) FROM ledger_entry WHERE chain = 'd' AND to_addr = '0xt1' "
                                "AND batch_id = 1 AND block_number <= 9").fetchone()[0] == 0
        assert _schema_diff(url) == []
        command.downgrade(alembic_config(url), "0010")
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            have = _ledger_index_columns(conn)
            assert {k: have.get(k) for k in old} == old and not set(new) & set(have)
        upgrade(url)
        assert _schema_diff(url) == []
    finally:
        pg_factory.drop(url)


def test_0011_leaves_indexes_a_cold_backfill_deferred_to_the_indexer(pg_factory):
    """A database whose deferrable indexes a cold backfill dropped gets none from 0011: the indexer builds the new
    definitions once it has caught up (indexer.indexes), so the migration does not undo the deferral."""
    url = pg_factory.fresh(migrated=False)
    try:
        upgrade(url, "0010")
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            conn.execute("DROP INDEX ix_ledger_entry_to_batch, ix_ledger_entry_from")
        upgrade(url)
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            have = _ledger_index_columns(conn)
            assert not {"ix_ledger_entry_receiver", "ix_ledger_entry_sender", "ix_ledger_entry_to_batch",
                        "ix_ledger_entry_from"} & set(have), have
    finally:
        pg_factory.drop(url)


def test_0011_runs_again_after_a_failure(pg_factory):
    """A failed run leaves INVALID indexes (a CONCURRENTLY build that failed) or a valid new index beside its old
    one (stopped before the drop). Run again, 0011 drops the INVALID ones, keeps the valid new one as it is (not
    built twice) and drops its old one; an old index that is itself INVALID is dropped and its new one left to the
    indexer, as when a cold backfill dropped it."""
    from alembic import command

    from store.migrate import alembic_config

    url = pg_factory.fresh(migrated=False)
    try:
        upgrade(url, "0010")
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            for i in range(3):
                _ledger_row(conn, f"0x0{i}", i, 7)
            invalid_index(conn, "ix_ledger_entry_receiver")  # the build of the new index failed
            conn.execute("DROP INDEX ix_ledger_entry_from")
            invalid_index(conn, "ix_ledger_entry_from")  # an old index that is itself INVALID
        upgrade(url)
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            have = _ledger_index_columns(conn)
            assert have.get("ix_ledger_entry_receiver") == "to_addr, batch_id, block_number, chain"
            assert not {"ix_ledger_entry_to_batch", "ix_ledger_entry_from", "ix_ledger_entry_sender"} & set(have), have
            assert conn.execute("SELECT bool_and(indisvalid) FROM pg_index WHERE indrelid = 'ledger_entry'::regclass"
                                ).fetchone()[0]
        command.downgrade(alembic_config(url), "0010")
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:  # a run stopped between build and drop:
            conn.execute("CREATE INDEX ix_ledger_entry_receiver ON ledger_entry (to_addr, batch_id, block_number, chain)")
            oid = conn.execute("SELECT 'ix_ledger_entry_receiver'::regclass::oid").fetchone()[0]
        upgrade(url)
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            assert conn.execute("SELECT 'ix_ledger_entry_receiver'::regclass::oid").fetchone()[0] == oid  # kept
            assert "ix_ledger_entry_to_batch" not in _ledger_index_columns(conn)
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
