"""device presence history, proof-of-play monthly rollups for reports upward

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 20:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.db

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "device_presence",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("at", server.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("device_presence", schema=None) as batch_op:
        batch_op.create_index("ix_device_presence_device_at", ["device_id", "at"], unique=False)
        batch_op.create_index(batch_op.f("ix_device_presence_at"), ["at"], unique=False)
    op.create_table(
        "play_rollups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("org_unit_id", sa.Integer(), nullable=False),
        sa.Column("programme_id", sa.Integer(), nullable=True),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("on_time", sa.Integer(), nullable=False),
        sa.Column("played_s", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_play_rollups_month_unit", "play_rollups", ["month", "org_unit_id"])
    state = op.create_table(
        "play_rollup_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(state, [{"id": 1, "last_id": 0}])
    op.create_index(
        "ix_play_events_emergency",
        "play_events",
        ["planned_start"],
        postgresql_where=sa.text("priority = 'emergency'"),
        sqlite_where=sa.text("priority = 'emergency'"),
    )


def downgrade() -> None:
    op.drop_index("ix_play_events_emergency", table_name="play_events")
    op.drop_table("play_rollup_state")
    op.drop_index("ix_play_rollups_month_unit", table_name="play_rollups")
    op.drop_table("play_rollups")
    with op.batch_alter_table("device_presence", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_presence_at"))
        batch_op.drop_index("ix_device_presence_device_at")
    op.drop_table("device_presence")
