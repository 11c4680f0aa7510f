"""data_version: what the API's answer cache keys on besides the indexer cursors

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 06:00:00

Indexed tables change only in the transaction that moves their chain's cursor, so the cursors say when an answer
read from them is stale. oracle_verification is written by the oracle (a verifier's approval), and a certificate's
provenance reads it: a statement trigger bumps its counter in the same transaction (approvals are rare, so the
one row is no point of contention).
"""

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

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
    op.execute("INSERT INTO data_version (source, version) VALUES ('oracle_verification', 0)")
    op.execute(FUNCTION)
    op.execute("CREATE TRIGGER oracle_verification_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
               "ON oracle_verification FOR EACH STATEMENT EXECUTE FUNCTION carbonledger_bump_data_version()")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS oracle_verification_version ON oracle_verification")
    op.execute("DROP FUNCTION IF EXISTS carbonledger_bump_data_version()")
    op.drop_table('data_version')
