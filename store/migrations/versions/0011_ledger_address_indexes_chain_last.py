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
whole deferred build at 1M events (three indexes on three connections), interleaved runs: 6.2-6.7 s -> 4.7-5.4 s.
The queries still seek by the address (and batch) with equalities, then the block range; rows of other chains are
skipped inside the index, by its last column.

New names, so an indexer of the previous release that finds its old names missing (after a reorg, a lost race, a
takeover) builds those again rather than mistaking the new definitions for them; this release's indexer drops them
(indexer.indexes.OBSOLETE). Stop the indexers while upgrading or downgrading all the same (docs/deploy.md): an
indexer of the other release rebuilds the names it misses with a plain CREATE INDEX, which holds the ledger's writes.

Built CONCURRENTLY, the old ones dropped CONCURRENTLY: API readers are never blocked. A new index is built only where
its old one exists and is valid: a database whose deferrable indexes a cold backfill dropped gets the new ones from
the indexer when it catches up. Safe to run again after a failure (a CONCURRENTLY build that fails leaves an INVALID
index of its name): an INVALID index of either name is dropped, a valid new one is kept, not built twice.
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


def _valid(name: str) -> bool | None:
    """None: no index of that name; else whether it is valid (a CONCURRENTLY build that failed leaves it not)."""
    row = op.get_bind().exec_driver_sql(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relname = %(n)s", {"n": name}).first()
    return None if row is None else row[0]


def _swap(pairs: list[tuple[str, str, str]]) -> None:
    """For each (present, wanted, columns): build `wanted` on `columns` where a valid `present` exists, then drop
    `present`; INVALID leftovers of either name are dropped."""
    with op.get_context().autocommit_block():
        for present, wanted, columns in pairs:
            if _valid(wanted) is False:
                op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {wanted}")
            was = _valid(present)
            if was and not _valid(wanted):
                op.execute(f"CREATE INDEX CONCURRENTLY {wanted} ON ledger_entry ({columns})")
            if was is not None:
                op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {present}")


def upgrade() -> None:
    _swap([(old, new, columns) for new, (old, columns, _) in NEW.items()])


def downgrade() -> None:
    _swap([(new, old, columns) for new, (old, _, columns) in NEW.items()])
