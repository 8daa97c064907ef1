"""apps.max_revenue_amount: the gateway's per-app bound on revenue.amount

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The server default fills the existing apps with the gateway's default bound.
    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("max_revenue_amount", sa.Float(), server_default=sa.text("1000000"), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.drop_column("max_revenue_amount")
