"""channel temperature: the flagged share that alerts moderators, and the slowmode's length

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 03:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("guild_settings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("temperature_level", sa.Float(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("slowmode_minutes", sa.Integer(), nullable=False, server_default="10")
        )


def downgrade() -> None:
    with op.batch_alter_table("guild_settings", schema=None) as batch_op:
        batch_op.drop_column("slowmode_minutes")
        batch_op.drop_column("temperature_level")
