"""relay sources, monthly report export records

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 23:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.db

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "relay_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("allow_private", sa.Boolean(), nullable=False),
        sa.Column("org_unit_id", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", server.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", server.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["org_unit_id"], ["org_units.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("relay_sources", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_relay_sources_org_unit_id"), ["org_unit_id"], unique=False
        )
    op.create_table(
        "report_exports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("org_unit_id", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(length=16), nullable=False),
        sa.Column("destination", sa.String(length=2000), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=False),
        sa.Column("started_at", server.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", server.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_report_exports_period", "report_exports", ["period", "org_unit_id", "target"]
    )


def downgrade() -> None:
    op.drop_index("ix_report_exports_period", table_name="report_exports")
    op.drop_table("report_exports")
    with op.batch_alter_table("relay_sources", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_relay_sources_org_unit_id"))
    op.drop_table("relay_sources")
