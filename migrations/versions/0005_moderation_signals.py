"""moderation signals and per-label thresholds per guild; label scores on events and of
every checked message

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 22:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("guild_settings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("signals", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("label_thresholds", sa.JSON(), nullable=True))
    with op.batch_alter_table("moderation_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scores", sa.JSON(), nullable=True))
    op.create_table(
        "checked_scores",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("guild_id", sa.BigInteger(), nullable=False),
        sa.Column("channel_id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checked_scores")),
    )
    op.create_index(
        "ix_checked_scores_guild_time", "checked_scores", ["guild_id", "created_at"], unique=False
    )
    op.create_index(
        op.f("ix_checked_scores_created_at"), "checked_scores", ["created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_checked_scores_created_at"), table_name="checked_scores")
    op.drop_index("ix_checked_scores_guild_time", table_name="checked_scores")
    op.drop_table("checked_scores")
    with op.batch_alter_table("moderation_events", schema=None) as batch_op:
        batch_op.drop_column("scores")
    with op.batch_alter_table("guild_settings", schema=None) as batch_op:
        batch_op.drop_column("label_thresholds")
        batch_op.drop_column("signals")
