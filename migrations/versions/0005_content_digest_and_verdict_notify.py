"""content digest of rebuilt deliveries; NOTIFY on each new prediction

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A request waiting for an email's verdict LISTENs on its channel (core/mailbox.py).
NOTIFY_FUNCTION = """
CREATE FUNCTION notify_prediction() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('spamsift_prediction_' || NEW.email_id, '');
    RETURN NEW;
END
$$
"""


def upgrade() -> None:
    op.add_column('emails', sa.Column('content_digest', sa.LargeBinary(length=32), nullable=True))
    op.create_index('ix_emails_source_content_digest', 'emails', ['source', 'content_digest'],
                    unique=False, postgresql_where=sa.text('content_digest IS NOT NULL'))
    op.execute(NOTIFY_FUNCTION)
    op.execute("CREATE TRIGGER predictions_notify AFTER INSERT OR UPDATE ON predictions "
               "FOR EACH ROW EXECUTE FUNCTION notify_prediction()")


def downgrade() -> None:
    op.execute("DROP TRIGGER predictions_notify ON predictions")
    op.execute("DROP FUNCTION notify_prediction()")
    op.drop_index('ix_emails_source_content_digest', table_name='emails',
                  postgresql_where=sa.text('content_digest IS NOT NULL'))
    op.drop_column('emails', 'content_digest')
