"""one prediction per (email, model)

Duplicates made by redelivered tasks are deleted first, keeping the newest of each pair.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "DELETE FROM predictions AS older USING predictions AS newer"
        " WHERE older.email_id = newer.email_id AND older.model_id = newer.model_id"
        " AND older.id < newer.id"
    )
    op.create_unique_constraint(op.f('uq_predictions_email_id_model_id'), 'predictions',
                                ['email_id', 'model_id'])


def downgrade() -> None:
    op.drop_constraint(op.f('uq_predictions_email_id_model_id'), 'predictions', type_='unique')
