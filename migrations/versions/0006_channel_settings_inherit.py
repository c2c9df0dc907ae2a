"""channel settings: conversation mode may be unset (a thread follows its parent channel)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 22:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("channel_settings", schema=None) as batch_op:
        batch_op.alter_column("conversation_enabled", existing_type=sa.Boolean(), nullable=True)


def downgrade() -> None:
    # Unset reads as off everywhere once threads no longer inherit.
    op.execute(
        "UPDATE channel_settings SET conversation_enabled = false "
        "WHERE conversation_enabled IS NULL"
    )
    with op.batch_alter_table("channel_settings", schema=None) as batch_op:
        batch_op.alter_column("conversation_enabled", existing_type=sa.Boolean(), nullable=False)
