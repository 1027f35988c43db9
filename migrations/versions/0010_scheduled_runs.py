"""scheduled runs (when each scheduled job ran, how long, how it ended), the holdout set,
self-training's pseudo-labels, and when retention purged an email's raw message

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('emails', sa.Column('raw_purged_at', sa.DateTime(timezone=True),
                                      nullable=True))
    op.create_table(
        'scheduled_runs',
        sa.Column('id', sa.BigInteger(), nullable=False),
        sa.Column('name', sa.String(length=50), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True),
                  server_default=sa.text('clock_timestamp()'), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('outcome', sa.String(length=20), nullable=False),
        sa.Column('message', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_scheduled_runs')),
    )
    op.create_index('ix_scheduled_runs_name_started_at', 'scheduled_runs',
                    ['name', 'started_at'])
    op.create_table(
        'holdout_emails',
        sa.Column('email_id', sa.BigInteger(), nullable=False),
        sa.Column('label', postgresql.ENUM('spam', 'ham', name='label', create_type=False),
                  nullable=False),
        sa.Column('added_at', sa.DateTime(timezone=True), server_default=sa.text('now()'),
                  nullable=False),
        sa.ForeignKeyConstraint(['email_id'], ['emails.id'],
                                name=op.f('fk_holdout_emails_email_id_emails'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('email_id', name=op.f('pk_holdout_emails')),
    )
    op.create_table(
        'pseudo_labels',
        sa.Column('email_id', sa.BigInteger(), nullable=False),
        sa.Column('label', postgresql.ENUM('spam', 'ham', name='label', create_type=False),
                  nullable=False),
        sa.Column('p_spam', sa.Float(), nullable=False),
        sa.Column('model_id', sa.BigInteger(), nullable=True),
        sa.Column('job_id', sa.BigInteger(), nullable=True),
        sa.Column('round', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'),
                  nullable=False),
        sa.ForeignKeyConstraint(['email_id'], ['emails.id'],
                                name=op.f('fk_pseudo_labels_email_id_emails'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['model_id'], ['models.id'],
                                name=op.f('fk_pseudo_labels_model_id_models'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'],
                                name=op.f('fk_pseudo_labels_job_id_jobs'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('email_id', name=op.f('pk_pseudo_labels')),
    )


def downgrade() -> None:
    op.drop_column('emails', 'raw_purged_at')
    op.drop_table('pseudo_labels')
    op.drop_table('holdout_emails')
    op.drop_index('ix_scheduled_runs_name_started_at', table_name='scheduled_runs')
    op.drop_table('scheduled_runs')
