"""feedback cases, public bulletins

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 04:22:13.550005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.db

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "feedback_categories",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_unit_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("due_days", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", server.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_unit_id"], ["org_units.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("feedback_categories", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_feedback_categories_org_unit_id"), ["org_unit_id"], unique=False
        )

    op.create_table(
        "feedback_cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tracking_code", sa.String(length=32), nullable=False),
        sa.Column("org_unit_id", sa.Integer(), nullable=False),
        sa.Column("received_by_unit_id", sa.Integer(), nullable=False),
        sa.Column("category_id", sa.Integer(), nullable=True),
        sa.Column("category_name", sa.String(length=100), nullable=False),
        sa.Column("content", sa.String(length=5000), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("personal_erased_at", server.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("attachment_sha256", sa.String(length=64), nullable=True),
        sa.Column("attachment_type", sa.String(length=64), nullable=True),
        sa.Column("attachment_size", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("assigned_to", sa.Integer(), nullable=True),
        sa.Column("answer", sa.String(length=5000), nullable=False),
        sa.Column("answer_public", sa.Boolean(), nullable=False),
        sa.Column("answered_at", server.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("due_at", server.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("closed_at", server.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("sender_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", server.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", server.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["assigned_to"], ["users.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["category_id"], ["feedback_categories.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["org_unit_id"], ["org_units.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["received_by_unit_id"], ["org_units.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tracking_code"),
    )
    with op.batch_alter_table("feedback_cases", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_feedback_cases_category_id"), ["category_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_feedback_cases_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_feedback_cases_due_at"), ["due_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_feedback_cases_org_unit_id"), ["org_unit_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_feedback_cases_received_by_unit_id"),
            ["received_by_unit_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_feedback_cases_sender_hash"), ["sender_hash"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_feedback_cases_status"), ["status"], unique=False)

    op.create_table(
        "feedback_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("to_org_unit_id", sa.Integer(), nullable=True),
        sa.Column("note", sa.String(length=5000), nullable=False),
        sa.Column("at", server.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["feedback_cases.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["to_org_unit_id"], ["org_units.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("feedback_steps", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_feedback_steps_case_id"), ["case_id"], unique=False)

    with op.batch_alter_table("bulletins", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("public", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:

    with op.batch_alter_table("bulletins", schema=None) as batch_op:
        batch_op.drop_column("public")

    with op.batch_alter_table("feedback_steps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_feedback_steps_case_id"))

    op.drop_table("feedback_steps")
    with op.batch_alter_table("feedback_cases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_feedback_cases_status"))
        batch_op.drop_index(batch_op.f("ix_feedback_cases_sender_hash"))
        batch_op.drop_index(batch_op.f("ix_feedback_cases_received_by_unit_id"))
        batch_op.drop_index(batch_op.f("ix_feedback_cases_org_unit_id"))
        batch_op.drop_index(batch_op.f("ix_feedback_cases_due_at"))
        batch_op.drop_index(batch_op.f("ix_feedback_cases_created_at"))
        batch_op.drop_index(batch_op.f("ix_feedback_cases_category_id"))

    op.drop_table("feedback_cases")
    with op.batch_alter_table("feedback_categories", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_feedback_categories_org_unit_id"))

    op.drop_table("feedback_categories")
