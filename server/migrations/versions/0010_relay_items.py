"""relay items in programmes, scheduled relay runs, relay figures in proof of play

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 03:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.db

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "programme_relays",
        sa.Column("programme_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("relay_source_id", sa.Integer(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("fallback_clip_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["fallback_clip_id"], ["clips.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["programme_id"], ["programmes.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["relay_source_id"], ["relay_sources.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("programme_id", "position"),
    )
    with op.batch_alter_table("programme_relays", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_programme_relays_fallback_clip_id"), ["fallback_clip_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_programme_relays_relay_source_id"), ["relay_source_id"], unique=False
        )
    op.create_table(
        "relay_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.String(length=40), nullable=False),
        sa.Column("programme_id", sa.Integer(), nullable=True),
        sa.Column("item_id", sa.String(length=200), nullable=False),
        sa.Column("relay_source_id", sa.Integer(), nullable=True),
        sa.Column("org_unit_id", sa.Integer(), nullable=True),
        sa.Column("planned_start", server.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("planned_end", server.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("started_at", server.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("ended_at", server.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("frames_sent", sa.Integer(), nullable=False),
        sa.Column("dead_air_s", sa.Float(), nullable=False),
        sa.Column("alarm", sa.String(length=300), nullable=False),
        sa.Column("alarm_at", server.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("alarm_cleared_at", server.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", server.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_unit_id"], ["org_units.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["relay_source_id"], ["relay_sources.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("session_id"),
    )
    with op.batch_alter_table("relay_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_relay_runs_org_unit_id"), ["org_unit_id"])
        batch_op.create_index(batch_op.f("ix_relay_runs_planned_start"), ["planned_start"])
        batch_op.create_index(batch_op.f("ix_relay_runs_programme_id"), ["programme_id"])
        batch_op.create_index(batch_op.f("ix_relay_runs_relay_source_id"), ["relay_source_id"])
        batch_op.create_index(batch_op.f("ix_relay_runs_state"), ["state"])
    with op.batch_alter_table("play_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("relay_mode", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("relayed_s", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("fallback_s", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("silent_s", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("play_events", schema=None) as batch_op:
        batch_op.drop_column("silent_s")
        batch_op.drop_column("fallback_s")
        batch_op.drop_column("relayed_s")
        batch_op.drop_column("relay_mode")
    with op.batch_alter_table("relay_runs", schema=None) as batch_op:
        for name in ("state", "relay_source_id", "programme_id", "planned_start", "org_unit_id"):
            batch_op.drop_index(batch_op.f(f"ix_relay_runs_{name}"))
    op.drop_table("relay_runs")
    with op.batch_alter_table("programme_relays", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_programme_relays_relay_source_id"))
        batch_op.drop_index(batch_op.f("ix_programme_relays_fallback_clip_id"))
    op.drop_table("programme_relays")
