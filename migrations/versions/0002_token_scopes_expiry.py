"""token scopes and expiry; server-side login sessions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

Existing tokens keep what they could do for their user's role: an admin's token gets the
admin scope, a viewer's the read scope (viewers can no longer deliver mail).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('api_tokens', sa.Column('scopes', postgresql.ARRAY(sa.String(length=16)),
                                          nullable=True))
    op.add_column('api_tokens', sa.Column('expires_at', sa.DateTime(timezone=True),
                                          nullable=True))
    op.execute(
        "UPDATE api_tokens SET scopes = CASE users.role WHEN 'admin' THEN ARRAY['admin'] "
        "ELSE ARRAY['read'] END::varchar[] FROM users WHERE users.id = api_tokens.user_id"
    )
    op.alter_column('api_tokens', 'scopes', nullable=False)
    op.create_check_constraint(
        op.f('ck_api_tokens_scopes_known'), 'api_tokens',
        "cardinality(scopes) > 0 AND scopes <@ ARRAY['ingest', 'read', 'admin']::varchar[]")
    op.create_table('login_sessions',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('token_hash', sa.LargeBinary(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_login_sessions_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_sessions')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_login_sessions_token_hash'))
    )
    op.create_index(op.f('ix_login_sessions_user_id'), 'login_sessions', ['user_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_login_sessions_user_id'), table_name='login_sessions')
    op.drop_table('login_sessions')
    op.drop_constraint(op.f('ck_api_tokens_scopes_known'), 'api_tokens', type_='check')
    op.drop_column('api_tokens', 'expires_at')
    op.drop_column('api_tokens', 'scopes')
