"""ledger_entry: the custody trace's indexes lead with the address and name the chain last

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 06:30:00

ix_ledger_entry_to_batch (chain, to_addr, batch_id, block_number) becomes ix_ledger_entry_receiver (to_addr, batch_id,
block_number, chain) and ix_ledger_entry_from (chain, from_addr, block_number) becomes ix_ledger_entry_sender
(from_addr, block_number, chain). A cold backfill builds them by sorting the whole ledger after catching up, on the
critical path. With `chain` first, a column that never differs on a one-chain database, every comparison of that
sort starts with a text comparison that decides nothing; last, it is compared only on ties. Measured on the
backfill bench's 988k ledger rows, one build at a time: 4.0-5.0 s -> 3.0-3.6 s and 2.8-3.6 s -> 2.0-2.3 s; the
whole deferred build at 1M events 5.8-6.1 s -> 4.7-4.8 s. The queries still seek by address, batch and block
(equalities, then the block range) and check the chain inside the index, without reading the table.

New names, so an indexer of the previous release that finds its old names missing (after a reorg, a lost race, a
takeover) builds those again rather than mistaking the new definitions for them; this release's indexer drops them
(indexer.indexes.OBSOLETE). Built CONCURRENTLY, the old ones dropped CONCURRENTLY: API readers and an indexer at the
head are never blocked. Only where the old index exists: a database whose deferrable indexes a cold backfill dropped
gets the new ones from the indexer when it catches up. An INVALID index a failed run left is dropped first.
"""

from alembic import op


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

NEW = {"ix_ledger_entry_receiver": ("ix_ledger_entry_to_batch", "to_addr, batch_id, block_number, chain",
                                    "chain, to_addr, batch_id, block_number"),
       "ix_ledger_entry_sender": ("ix_ledger_entry_from", "from_addr, block_number, chain",
                                  "chain, from_addr, block_number")}


def _exists(name: str) -> bool:
    return op.get_bind().exec_driver_sql(
        "SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = current_schema() AND indexname = %(n)s)",
        {"n": name}).scalar()


def _swap(pairs: list[tuple[str, str, str]]) -> None:
    """For each (present, wanted, columns): build `wanted` on `columns` where `present` exists, then drop `present`."""
    todo = [(present, wanted, columns) for present, wanted, columns in pairs if _exists(present)]
    with op.get_context().autocommit_block():
        for present, wanted, columns in todo:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {wanted}")  # an INVALID one a failed run left
            op.execute(f"CREATE INDEX CONCURRENTLY {wanted} ON ledger_entry ({columns})")
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {present}")


def upgrade() -> None:
    _swap([(old, new, columns) for new, (old, columns, _) in NEW.items()])


def downgrade() -> None:
    _swap([(new, old, columns) for new, (old, _, columns) in NEW.items()])
