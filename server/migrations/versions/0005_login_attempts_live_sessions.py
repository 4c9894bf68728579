"""sign-in attempts shared by all server processes; live-session registry

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Failed (and in-flight) sign-in attempts per (username, client address): the limit is
    # counted in the database so that every server process shares it.
    op.create_table('login_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),  # sha256 of username + address
    sa.Column('at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_login_attempts_key_at', 'login_attempts', ['key', 'at'])
    op.create_index('ix_login_attempts_at', 'login_attempts', ['at'])  # prune by age
    # Live sessions of every server process: listed and stopped through any of them.
    op.create_table('live_sessions',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('owner', sa.String(length=64), nullable=False),
    sa.Column('org_unit_ids', sa.JSON(), nullable=False),
    sa.Column('view', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('stop_requested', sa.String(length=200), nullable=True),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('live_sessions')
    op.drop_index('ix_login_attempts_at', table_name='login_attempts')
    op.drop_index('ix_login_attempts_key_at', table_name='login_attempts')
    op.drop_table('login_attempts')
