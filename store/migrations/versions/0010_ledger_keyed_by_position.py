"""ledger_entry: keyed by position (chain, block_number, log_index, seq) instead of by transaction

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 01:20:00

The key (chain, tx_hash, log_index, seq) put each transaction's rows at a random page of its index: a backfill
appending a million movements in block order touched pages all over an index that outgrew shared_buffers (208 MB
for 988k rows), ~3 us of Postgres CPU per row (measured: an INSERT of those rows in block order took 5.8-6.0 s
into a table with that key, 2.6-3.5 s with the position key, 2.8-3.1 s with none). Keyed by position, the index
grows at its right edge and is a quarter of the size (47 MB). It is as unique: EVM log indexes and Substrate event
indexes count through their block (the indexer refuses a node's answer with two logs at one position:
indexer.sync._check_events), and an Aptos "block" is one transaction (its version). The key also serves the reorg
undo (chain = ? AND block_number > ?), so ix_ledger_entry_block_number goes. The one query that found ledger rows by
transaction (a seller's sales in the custody trace) also names the sale's block.

The new key's index is built CONCURRENTLY (API readers and an indexer at the head are not blocked while it builds);
an index a failed run left INVALID is dropped first. The constraint then changes over in one ALTER, which needs the
table to itself for a moment: it waits at most LOCK_WAIT for readers to finish (a waiting ALTER queues every new
reader behind it), gives way and tries again, up to ATTEMPTS times, saying so in the log.
"""

import logging
import time

from alembic import op
from sqlalchemy.exc import OperationalError


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")
LOCK_WAIT, ATTEMPTS = "2s", 30


def _rekey(columns: str) -> None:
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_ledger_entry_rekey")
        op.execute(f"CREATE UNIQUE INDEX CONCURRENTLY ix_ledger_entry_rekey ON ledger_entry ({columns})")
    bind = op.get_bind()
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with bind.begin_nested():  # a savepoint: a lock timeout undoes only this attempt (and its SET LOCAL)
                bind.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_WAIT}'")
                bind.exec_driver_sql("ALTER TABLE ledger_entry DROP CONSTRAINT pk_ledger_entry, "
                                     "ADD CONSTRAINT pk_ledger_entry PRIMARY KEY USING INDEX ix_ledger_entry_rekey")
            return
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != "55P03" or attempt == ATTEMPTS:  # 55P03: lock_not_available
                raise
            log.warning("ledger_entry is busy (a long read holds it); changing its key again in 1 s "
                        "(attempt %d of %d)", attempt, ATTEMPTS)
            time.sleep(1)


def upgrade() -> None:
    _rekey("chain, block_number, log_index, seq")
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_ledger_entry_block_number")


def downgrade() -> None:
    _rekey("chain, tx_hash, log_index, seq")
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_ledger_entry_block_number")  # an INVALID one a failed run left
        op.execute("CREATE INDEX CONCURRENTLY ix_ledger_entry_block_number ON ledger_entry (block_number)")
