"""data_version: what the API's answer cache keys on besides the indexer cursors

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 06:00:00

The indexer changes indexed tables only in the transaction that writes its chain's cursor, so the cursors say when
an answer read from them is stale. Anything else that writes a table the API reads bumps that table's counter here,
in its own transaction, through a statement trigger: oracle_verification (a verifier's approval, shown in
provenance), and any write to an indexed table that does not come from the indexer (an operator's repair in psql,
a test's fixture rows; the indexer's sessions say who they are with `SET carbonledger.indexer = on`, so its own
writes cost one setting lookup per statement and contend on no row).
"""

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

# What the API reads, as of this revision.
INDEXED = ("auction", "auction_bid", "credit_batch", "escrow_order", "holding", "indexed_block", "iot_anchor",
           "ledger_entry", "listing", "mint_event", "offchain_payment", "order_event", "qr_payment", "qr_settlement",
           "retirement", "trade")

FUNCTION = """
CREATE FUNCTION carbonledger_bump_data_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO data_version (source, version) VALUES (TG_TABLE_NAME, 1)
    ON CONFLICT (source) DO UPDATE SET version = data_version.version + 1;
  RETURN NULL;
END $$;
"""


def upgrade() -> None:
    op.create_table('data_version',
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('version', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.PrimaryKeyConstraint('source', name=op.f('pk_data_version'))
    )
    op.execute(FUNCTION)
    op.execute("CREATE TRIGGER data_version_bump AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON oracle_verification "
               "FOR EACH STATEMENT EXECUTE FUNCTION carbonledger_bump_data_version()")
    for table in INDEXED:
        op.execute(f"CREATE TRIGGER data_version_bump AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
                   "FOR EACH STATEMENT WHEN (current_setting('carbonledger.indexer', true) IS DISTINCT FROM 'on') "
                   "EXECUTE FUNCTION carbonledger_bump_data_version()")


def downgrade() -> None:
    for table in ("oracle_verification", *INDEXED):
        op.execute(f"DROP TRIGGER IF EXISTS data_version_bump ON {table}")
    op.execute("DROP FUNCTION IF EXISTS carbonledger_bump_data_version()")
    op.drop_table('data_version')
