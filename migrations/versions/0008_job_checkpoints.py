"""jobs keep a checkpoint, so a training run goes on where a lost worker left it

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('jobs', sa.Column('checkpoint', sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    op.drop_column('jobs', 'checkpoint')
