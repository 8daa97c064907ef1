"""installs and device_identities keyed by mode: test (pk_test_) and live traffic keep separate state

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import op
from sqlalchemy.exc import SAWarning

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _replace_primary_key(table: str, columns: list[str]) -> None:
    # PostgreSQL names the key <table>_pkey; SQLite's batch mode copies the table with the new key (and
    # says, in a warning, that the copy's key differs from the original's: that is the point).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*as primary_key=True, not matching.*", category=SAWarning)
        with op.batch_alter_table(table, recreate="auto") as batch_op:
            if op.get_bind().dialect.name != "sqlite":
                batch_op.drop_constraint(f"{table}_pkey", type_="primary")
            batch_op.create_primary_key(f"{table}_pkey", columns)


def upgrade() -> None:
    # Existing rows were written by both modes into one row per device; they stay as they are (the
    # row's own `sandbox` says which mode set it), and from now on each mode has its own row.
    _replace_primary_key("installs", ["app_id", "device_id", "sandbox"])
    with op.batch_alter_table("device_identities", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sandbox", sa.Boolean(), server_default=sa.false(), nullable=False))
    _replace_primary_key("device_identities", ["app_id", "kind", "value", "sandbox"])


def downgrade() -> None:
    # Test rows would collide with live ones under the old keys: they go.
    op.execute(sa.text("DELETE FROM device_identities WHERE sandbox"))
    op.execute(sa.text("DELETE FROM installs WHERE sandbox AND EXISTS (SELECT 1 FROM installs AS live "
                       "WHERE live.app_id = installs.app_id AND live.device_id = installs.device_id "
                       "AND NOT live.sandbox)"))
    _replace_primary_key("device_identities", ["app_id", "kind", "value"])
    with op.batch_alter_table("device_identities", schema=None) as batch_op:
        batch_op.drop_column("sandbox")
    _replace_primary_key("installs", ["app_id", "device_id"])
