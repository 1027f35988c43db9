"""the email's verdict as a pointer; search indexing apart from the verdict

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23

``emails.verdict_id`` names the prediction that is the email's verdict (newest before this
revision), and the verdict NOTIFY fires when it changes. ``emails.indexed_with`` names the
vector space of the email's search chunks. The status ``embedded`` goes: an email is parsed
until it has a verdict, whatever its vectors. ``jobs.updated_at`` shows whether a running
job still moves.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOTIFY_FUNCTION = """
CREATE FUNCTION notify_verdict() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('spamsift_prediction_' || NEW.id, '');
    RETURN NEW;
END
$$
"""
OLD_NOTIFY_FUNCTION = """
CREATE FUNCTION notify_prediction() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('spamsift_prediction_' || NEW.email_id, '');
    RETURN NEW;
END
$$
"""


def _set_statuses(values: tuple[str, ...], mapping: str) -> None:
    """Recreate the email_status type with ``values``; ``mapping`` is a CASE over the
    old status text that gives the new one."""
    op.execute("ALTER TYPE email_status RENAME TO email_status_old")
    sa.Enum(*values, name='email_status').create(op.get_bind())
    op.execute("DROP INDEX ix_emails_status_updated_at")
    op.execute(f"ALTER TABLE emails ALTER COLUMN status TYPE email_status USING ({mapping})"
               "::email_status")
    op.execute("DROP TYPE email_status_old")
    op.create_index('ix_emails_status_updated_at', 'emails', ['status', 'updated_at'])


def upgrade() -> None:
    op.add_column('emails', sa.Column('verdict_id', sa.BigInteger(), nullable=True))
    op.add_column('emails', sa.Column('indexed_with', sa.String(length=200), nullable=True))
    op.add_column('jobs', sa.Column('updated_at', sa.DateTime(timezone=True),
                                    server_default=sa.text('now()'), nullable=False))
    op.create_foreign_key('fk_emails_verdict_id_predictions', 'emails', 'predictions',
                          ['verdict_id'], ['id'], ondelete='SET NULL')
    op.execute("UPDATE emails e SET verdict_id = p.id FROM ("
               " SELECT DISTINCT ON (email_id) email_id, id FROM predictions"
               " ORDER BY email_id, id DESC) p WHERE p.email_id = e.id")
    op.execute("UPDATE emails e SET indexed_with = c.encoder FROM ("
               " SELECT DISTINCT ON (email_id) email_id, encoder FROM chunks"
               " ORDER BY email_id, created_at DESC) c WHERE c.email_id = e.id")
    _set_statuses(('received', 'parsed', 'classified', 'failed'),
                  "CASE status::text WHEN 'embedded' THEN 'parsed' ELSE status::text END")
    op.create_index('ix_emails_waiting_received_at', 'emails', ['received_at'],
                    postgresql_where=sa.text("verdict_id IS NULL AND status IN ('received', "
                                             "'parsed')"))
    op.execute("DROP TRIGGER predictions_notify ON predictions")
    op.execute("DROP FUNCTION notify_prediction()")
    op.execute(NOTIFY_FUNCTION)
    op.execute("CREATE TRIGGER emails_verdict_notify AFTER UPDATE OF verdict_id ON emails"
               " FOR EACH ROW WHEN (NEW.verdict_id IS DISTINCT FROM OLD.verdict_id)"
               " EXECUTE FUNCTION notify_verdict()")


def downgrade() -> None:
    op.execute("DROP TRIGGER emails_verdict_notify ON emails")
    op.execute("DROP FUNCTION notify_verdict()")
    op.execute(OLD_NOTIFY_FUNCTION)
    op.execute("CREATE TRIGGER predictions_notify AFTER INSERT OR UPDATE ON predictions "
               "FOR EACH ROW EXECUTE FUNCTION notify_prediction()")
    op.drop_index('ix_emails_waiting_received_at', table_name='emails')
    _set_statuses(('received', 'parsed', 'embedded', 'classified', 'failed'),
                  "CASE WHEN status::text = 'parsed' AND indexed_with IS NOT NULL"
                  " THEN 'embedded' ELSE status::text END")
    op.drop_constraint('fk_emails_verdict_id_predictions', 'emails', type_='foreignkey')
    op.drop_column('jobs', 'updated_at')
    op.drop_column('emails', 'indexed_with')
    op.drop_column('emails', 'verdict_id')
