"""live: oracle intent transitions notify the live channel

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 16:00:00

A trigger, not a call at each UPDATE site: every status change of an oracle intent (whichever process or code path
makes it) sends one small notice on `carbonledger_live`, inside the transaction that makes it, so the API's
subscribers (intentStatusChanged) hear of a transition only once it is committed. `xid` lets a subscriber that read
the current status in a snapshot skip notices that snapshot already saw.
"""

from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

FUNCTION = """
CREATE FUNCTION carbonledger_intent_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('carbonledger_live', json_build_object(
    't', 'intent', 'key', left(NEW.idempotency_key, 200), 'chain', NEW.chain, 'status', NEW.status,
    'tx', NEW.tx_hash, 'block', NEW.block_number, 'xid', pg_current_xact_id()::text)::text);
  RETURN NULL;
END $$;
"""


def upgrade() -> None:
    op.execute(FUNCTION)
    op.execute("CREATE TRIGGER oracle_intent_live AFTER INSERT ON oracle_intent FOR EACH ROW "
               "EXECUTE FUNCTION carbonledger_intent_notify()")
    op.execute("CREATE TRIGGER oracle_intent_live_status AFTER UPDATE OF status ON oracle_intent FOR EACH ROW "
               "WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION carbonledger_intent_notify()")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS oracle_intent_live_status ON oracle_intent")
    op.execute("DROP TRIGGER IF EXISTS oracle_intent_live ON oracle_intent")
    op.execute("DROP FUNCTION IF EXISTS carbonledger_intent_notify()")
