"""display text, feedback broadcast

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 09:25:15.026720

E-boards show a programme's display text; a feedback answer may be broadcast as a programme.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("feedback_cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("programme_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_feedback_cases_programme_id",
            "programmes",
            ["programme_id"],
            ["id"],
            ondelete="SET NULL",
        )

    with op.batch_alter_table("programmes", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("display_text", sa.String(length=2000), server_default="", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("programmes", schema=None) as batch_op:
        batch_op.drop_column("display_text")

    with op.batch_alter_table("feedback_cases", schema=None) as batch_op:
        batch_op.drop_constraint("fk_feedback_cases_programme_id", type_="foreignkey")
        batch_op.drop_column("programme_id")
