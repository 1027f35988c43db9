"""the index of mail waiting for a verdict holds delivered mail only

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

A realtime worker gathers the delivered mail (webhooks, API, CLI) waiting for a verdict. The
index it reads held imported mail too, so during a bulk import each realtime verdict walked
past the import's backlog; it now holds only what the worker looks for.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WAITING = "verdict_id IS NULL AND status IN ('received', 'parsed')"
REALTIME = "split_part(source, ':', 1) IN ('webhook', 'api', 'cli')"


def upgrade() -> None:
    op.drop_index('ix_emails_waiting_received_at', table_name='emails')
    op.create_index('ix_emails_realtime_waiting', 'emails', ['received_at'],
                    postgresql_where=sa.text(f"{WAITING} AND {REALTIME}"))


def downgrade() -> None:
    op.drop_index('ix_emails_realtime_waiting', table_name='emails')
    op.create_index('ix_emails_waiting_received_at', 'emails', ['received_at'],
                    postgresql_where=sa.text(WAITING))
