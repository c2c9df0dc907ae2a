"""moderation signals and per-label thresholds per guild; every label score on an event

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-23 22:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("guild_settings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("signals", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("label_thresholds", sa.JSON(), nullable=True))
    with op.batch_alter_table("moderation_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scores", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("moderation_events", schema=None) as batch_op:
        batch_op.drop_column("scores")
    with op.batch_alter_table("guild_settings", schema=None) as batch_op:
        batch_op.drop_column("label_thresholds")
        batch_op.drop_column("signals")
