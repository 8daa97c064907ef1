"""The admin service's resources: deleted apps and links, key rotation, and the admin events audit

apps.deleted_at_ms and tracking_links.deleted_at_ms: a soft delete (the app's keys stop working at once, a
link's URL answers 404; the rows stay for the audit and the reports). api_keys.expires_at_ms: a rotated key
keeps working until then (its grace period). admin_events: who (the admin token's id) did what to which app.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deleted_at_ms", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("tracking_links", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deleted_at_ms", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at_ms", sa.BigInteger(), nullable=True))
    op.create_table(
        "admin_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("token_id", sa.String(32), nullable=False),
        sa.Column("action", sa.String(80), nullable=False),
        sa.Column("method", sa.String(10), nullable=False),
        sa.Column("path", sa.String(500), nullable=False),
        sa.Column("app_id", sa.String(40), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
    )
    op.create_index("ix_admin_events_at", "admin_events", ["at_ms"])
    op.create_index("ix_admin_events_app_at", "admin_events", ["app_id", "at_ms"])


def downgrade() -> None:
    op.drop_index("ix_admin_events_app_at", table_name="admin_events")
    op.drop_index("ix_admin_events_at", table_name="admin_events")
    op.drop_table("admin_events")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("expires_at_ms")
    with op.batch_alter_table("tracking_links", schema=None) as batch_op:
        batch_op.drop_column("deleted_at_ms")
    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.drop_column("deleted_at_ms")
