"""ledger_entry: keyed by position (chain, block_number, log_index, seq) instead of by transaction

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 01:20:00

The key (chain, tx_hash, log_index, seq) put each transaction's rows at a random page of its index: a backfill
appending a million movements in block order touched pages all over an index that outgrew shared_buffers (208 MB
for 988k rows), ~3 us of Postgres CPU per row (measured: an INSERT of those rows in block order took 5.8-6.0 s
into a table with that key, 2.6-3.5 s with the position key, 2.8-3.1 s with none). Keyed by position, the index
grows at its right edge and is a quarter of the size (47 MB). It is as unique: EVM log indexes and Substrate event
indexes count through their block, and an Aptos "block" is one transaction (its version). The key also serves the
reorg undo (chain = ? AND block_number > ?), so ix_ledger_entry_block_number goes. The one query that found ledger
rows by transaction (a seller's sales in the custody trace) also names the sale's block.

The new key's index is built CONCURRENTLY (API readers and an indexer at the head are not blocked while it builds);
the constraint then changes over in one short ALTER. An index a failed run left INVALID is dropped first.
"""

from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def _rekey(columns: str, then_index: str) -> None:
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_ledger_entry_rekey")
        op.execute(f"CREATE UNIQUE INDEX CONCURRENTLY ix_ledger_entry_rekey ON ledger_entry ({columns})")
    op.execute("ALTER TABLE ledger_entry DROP CONSTRAINT pk_ledger_entry, "
               "ADD CONSTRAINT pk_ledger_entry PRIMARY KEY USING INDEX ix_ledger_entry_rekey")
    with op.get_context().autocommit_block():
        op.execute(then_index)


def upgrade() -> None:
    _rekey("chain, block_number, log_index, seq", "DROP INDEX CONCURRENTLY IF EXISTS ix_ledger_entry_block_number")


def downgrade() -> None:
    _rekey("chain, tx_hash, log_index, seq",
           "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_ledger_entry_block_number ON ledger_entry (block_number)")
