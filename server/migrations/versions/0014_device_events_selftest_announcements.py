"""device events, self-test schedule, announcement mode

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 14:57:21.150955

Issue 17: what devices find out about themselves (self-tests, silence, power), the
units' daily self-test time, and how announcements treat a lower item (cut or duck).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.db


revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "device_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("at", server.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.Column("command_id", sa.String(length=64), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("received_at", server.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name="fk_device_events_device", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("device_id", "seq", name="uq_device_events_device_seq"),
    )
    with op.batch_alter_table("device_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_device_events_device_kind_at", ["device_id", "kind", "at"], unique=False
        )

    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("selftest_code", sa.String(length=40), nullable=True))
        batch_op.add_column(
            sa.Column("selftest_at", server.db.UtcDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("silence_at", server.db.UtcDateTime(timezone=True), nullable=True)
        )

    with op.batch_alter_table("org_units", schema=None) as batch_op:
        batch_op.add_column(sa.Column("selftest_daily_at", sa.String(length=5), nullable=True))
        batch_op.add_column(
            sa.Column("selftest_volume", sa.Integer(), server_default="30", nullable=False)
        )

    with op.batch_alter_table("programmes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("announcement_mode", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("duck_db", sa.Float(), server_default="-18", nullable=False))
        batch_op.add_column(
            sa.Column("duck_ramp_ms", sa.Integer(), server_default="300", nullable=False)
        )

    with op.batch_alter_table("zones", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "announcement_mode", sa.String(length=8), server_default="cut", nullable=False
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("zones", schema=None) as batch_op:
        batch_op.drop_column("announcement_mode")

    with op.batch_alter_table("programmes", schema=None) as batch_op:
        batch_op.drop_column("duck_ramp_ms")
        batch_op.drop_column("duck_db")
        batch_op.drop_column("announcement_mode")

    with op.batch_alter_table("org_units", schema=None) as batch_op:
        batch_op.drop_column("selftest_volume")
        batch_op.drop_column("selftest_daily_at")

    with op.batch_alter_table("device_events", schema=None) as batch_op:
        batch_op.drop_index("ix_device_events_device_kind_at")

    op.drop_table("device_events")

    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("silence_at")
        batch_op.drop_column("selftest_at")
        batch_op.drop_column("selftest_code")
