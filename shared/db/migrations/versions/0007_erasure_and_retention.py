"""erasure_requests, and the time indexes retention prunes by

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# (index, table, column): what `apprefer db prune` deletes by, oldest first. audit_log has ix_audit_recorded.
TIME_INDEXES = (
    ("ix_clicks_clicked_at", "clicks", "clicked_at_ms"),
    ("ix_installs_installed_at", "installs", "installed_at_ms"),
    ("ix_skan_postbacks_received_at", "skan_postbacks", "received_at_ms"),
    ("ix_deliveries_delivered_at", "deliveries", "delivered_at_ms"),
)


def upgrade() -> None:
    op.create_table(
        "erasure_requests",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("erasure_id", sa.String(length=40), nullable=False),
        sa.Column("app_id", sa.String(length=40), nullable=False),
        sa.Column("identifiers", sa.String(length=100), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("requested_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("completed_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("erasure_id"),
    )
    op.create_index("ix_erasure_requests_app_id", "erasure_requests", ["app_id"], unique=False)
    for name, table, column in TIME_INDEXES:
        op.create_index(name, table, [column], unique=False)


def downgrade() -> None:
    for name, table, _column in reversed(TIME_INDEXES):
        op.drop_index(name, table_name=table)
    op.drop_index("ix_erasure_requests_app_id", table_name="erasure_requests")
    op.drop_table("erasure_requests")
