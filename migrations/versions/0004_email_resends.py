"""count the reconciler's re-sends per email

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('emails', sa.Column('resends', sa.Integer(), server_default=sa.text('0'),
                                      nullable=False))


def downgrade() -> None:
    op.drop_column('emails', 'resends')
