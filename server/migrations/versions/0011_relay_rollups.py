"""relay figures in the monthly sums of proof of play

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 03:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("play_rollups", schema=None) as batch_op:
        batch_op.add_column(sa.Column("relay_mode", sa.String(length=16), nullable=True))
        for name in ("relayed_s", "fallback_s", "silent_s"):
            batch_op.add_column(sa.Column(name, sa.Float(), nullable=False, server_default="0"))
    # Sums made before these columns miss the relay seconds of rows already summed: when any
    # summed row is a relay item, drop the sums; the next report sums everything again.
    op.execute(
        "DELETE FROM play_rollups WHERE EXISTS (SELECT 1 FROM play_events e, play_rollup_state s"
        " WHERE e.relay_mode IS NOT NULL AND e.id <= s.last_id)"
    )
    op.execute(
        "UPDATE play_rollup_state SET last_id = 0 WHERE NOT EXISTS (SELECT 1 FROM play_rollups)"
    )


def downgrade() -> None:
    with op.batch_alter_table("play_rollups", schema=None) as batch_op:
        for name in ("silent_s", "fallback_s", "relayed_s", "relay_mode"):
            batch_op.drop_column(name)
