"""bulletins, sources, CAP messages, regular slots

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 20:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.db

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "regular_slots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_unit_id", sa.Integer(), nullable=False),
        sa.Column("start_time", sa.String(length=5), nullable=False),
        sa.Column("weekdays", sa.String(length=7), nullable=False),
        sa.Column("created_at", server.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_unit_id"], ["org_units.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("regular_slots", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_regular_slots_org_unit_id"), ["org_unit_id"], unique=False
        )

    op.create_table(
        "sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("org_unit_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("max_level", sa.String(length=16), nullable=False),
        sa.Column("trusted_levels", sa.String(length=40), nullable=False),
        sa.Column("key_hint", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("revoked_at", server.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("rotated_at", server.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", server.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", server.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["org_unit_id"], ["org_units.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
        sa.UniqueConstraint("user_id"),
    )
    with op.batch_alter_table("sources", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sources_org_unit_id"), ["org_unit_id"], unique=False)

    op.create_table(
        "bulletins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("topic", sa.String(length=100), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("text", sa.String(length=5000), nullable=False),
        sa.Column("essential", sa.Boolean(), nullable=False),
        sa.Column("valid_from", server.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("valid_until", server.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("repeat_every_min", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rejection_reason", sa.String(length=1000), nullable=False),
        sa.Column("org_unit_id", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("source_id", sa.Integer(), nullable=True),
        sa.Column("tts_clip_id", sa.Integer(), nullable=True),
        sa.Column("approved_by", sa.Integer(), nullable=True),
        sa.Column("approved_at", server.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("created_at", server.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", server.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["approved_by"], ["users.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["org_unit_id"], ["org_units.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["source_id"], ["sources.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["tts_clip_id"], ["clips.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("bulletins", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bulletins_level"), ["level"], unique=False)
        batch_op.create_index(batch_op.f("ix_bulletins_org_unit_id"), ["org_unit_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_bulletins_source_id"), ["source_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_bulletins_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_bulletins_valid_until"), ["valid_until"], unique=False)

    op.create_table(
        "bulletin_clips",
        sa.Column("bulletin_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("clip_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["bulletin_id"], ["bulletins.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["clip_id"], ["clips.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("bulletin_id", "position"),
    )
    with op.batch_alter_table("bulletin_clips", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bulletin_clips_clip_id"), ["clip_id"], unique=False)

    op.create_table(
        "bulletin_targets",
        sa.Column("bulletin_id", sa.Integer(), nullable=False),
        sa.Column("org_unit_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["bulletin_id"], ["bulletins.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["org_unit_id"], ["org_units.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("bulletin_id", "org_unit_id"),
    )
    with op.batch_alter_table("bulletin_targets", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_bulletin_targets_org_unit_id"), ["org_unit_id"], unique=False
        )

    op.create_table(
        "cap_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sender", sa.String(length=255), nullable=False),
        sa.Column("identifier", sa.String(length=255), nullable=False),
        sa.Column("msg_type", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("bulletin_id", sa.Integer(), nullable=True),
        sa.Column("source_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("received_at", server.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["bulletin_id"], ["bulletins.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["source_id"], ["sources.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sender", "identifier", name="uq_cap_sender_identifier"),
    )
    with op.batch_alter_table("cap_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_cap_messages_bulletin_id"), ["bulletin_id"], unique=False
        )

    op.create_table(
        "bulletin_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("bulletin_id", sa.Integer(), nullable=False),
        sa.Column("org_unit_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_at", server.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("seen_at", server.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("decline_reason", sa.String(length=1000), nullable=False),
        sa.Column("programme_id", sa.Integer(), nullable=True),
        sa.Column("first_start", server.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("slot_position", sa.Integer(), nullable=True),
        sa.Column("warning", sa.String(length=500), nullable=False),
        sa.Column("clusters_targeted", sa.Integer(), nullable=False),
        sa.Column("clusters_played", sa.Integer(), nullable=False),
        sa.Column("first_played_at", server.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_played_at", server.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("created_at", server.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["bulletin_id"], ["bulletins.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["org_unit_id"], ["org_units.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["programme_id"], ["programmes.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("bulletin_id", "org_unit_id", name="uq_delivery_unit"),
    )
    with op.batch_alter_table("bulletin_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_bulletin_deliveries_bulletin_id"), ["bulletin_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_bulletin_deliveries_org_unit_id"), ["org_unit_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_bulletin_deliveries_programme_id"), ["programme_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_bulletin_deliveries_status"), ["status"], unique=False)

    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("latitude", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("longitude", sa.Float(), nullable=True))

    with op.batch_alter_table("programmes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bulletin_id", sa.Integer(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_programmes_bulletin_id"), ["bulletin_id"], unique=False
        )
        batch_op.create_foreign_key(
            "fk_programmes_bulletin_id", "bulletins", ["bulletin_id"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("programmes", schema=None) as batch_op:
        batch_op.drop_constraint("fk_programmes_bulletin_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_programmes_bulletin_id"))
        batch_op.drop_column("bulletin_id")

    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("longitude")
        batch_op.drop_column("latitude")

    with op.batch_alter_table("bulletin_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bulletin_deliveries_status"))
        batch_op.drop_index(batch_op.f("ix_bulletin_deliveries_programme_id"))
        batch_op.drop_index(batch_op.f("ix_bulletin_deliveries_org_unit_id"))
        batch_op.drop_index(batch_op.f("ix_bulletin_deliveries_bulletin_id"))

    op.drop_table("bulletin_deliveries")
    with op.batch_alter_table("cap_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cap_messages_bulletin_id"))

    op.drop_table("cap_messages")
    with op.batch_alter_table("bulletin_targets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bulletin_targets_org_unit_id"))

    op.drop_table("bulletin_targets")
    with op.batch_alter_table("bulletin_clips", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bulletin_clips_clip_id"))

    op.drop_table("bulletin_clips")
    with op.batch_alter_table("bulletins", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bulletins_valid_until"))
        batch_op.drop_index(batch_op.f("ix_bulletins_status"))
        batch_op.drop_index(batch_op.f("ix_bulletins_source_id"))
        batch_op.drop_index(batch_op.f("ix_bulletins_org_unit_id"))
        batch_op.drop_index(batch_op.f("ix_bulletins_level"))

    op.drop_table("bulletins")
    with op.batch_alter_table("sources", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sources_org_unit_id"))

    op.drop_table("sources")
    with op.batch_alter_table("regular_slots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_regular_slots_org_unit_id"))

    op.drop_table("regular_slots")
