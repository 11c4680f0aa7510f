"""ledger_entry: drop ix_ledger_entry_to, which no query needs

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 19:30:00

Every query that looks ledger rows up by receiver also names the batch (the custody trace, its picked rows, the
sale rows of an owner's listings), and the planner takes ix_ledger_entry_to_batch (chain, to_addr, batch_id,
block_number) for all of them. ix_ledger_entry_to (chain, to_addr, block_number) only cost writes: one more entry per
ledger row at the head, and after a cold backfill ~23% of the time spent building the ledger's secondary indexes
(1.05 of 4.5 s for 197k rows on the 2-core box). IF EXISTS: a cold backfill that has not caught up yet has dropped it
already (indexer.indexes). CONCURRENTLY (outside the migration's transaction): API readers of ledger_entry are
neither blocked nor waited behind an exclusive lock. An indexer of an earlier release still running when this runs
builds the index again once it next finds it missing; this release's indexer drops it at start
(indexer.indexes.OBSOLETE).
"""

from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_ledger_entry_to")


def downgrade() -> None:
    op.execute("CREATE INDEX IF NOT EXISTS ix_ledger_entry_to ON ledger_entry (chain, to_addr, block_number)")
