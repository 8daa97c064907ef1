"""The indexes of the app report (GET /admin/v1/apps/{app_id}/report, services/admin/stores/reports.py)

Each report query reads one app's rows in a time range: the index starts (app_id, time). On PostgreSQL the
columns the query groups by are INCLUDEd, so it is answered from the index alone (an index-only scan); SQLite
has no INCLUDE and gets the (app_id, time) part. The installs indexes are partial: live rows only (the report
leaves sandbox installs out), and for reinstalls only the rows whose latest install event is not the one that
set the row. The predicates are written as SQLAlchemy renders the report's WHERE on each dialect, so both
planners match them.

On a large existing audit_log the index build holds writes back while it runs (the audit consumer waits; its
records stay on Kafka).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

LIVE = ("NOT sandbox", "sandbox = 0")  # (PostgreSQL, SQLite)
REINSTALLED = ("NOT sandbox AND last_install_event_id <> event_id", "sandbox = 0 AND last_install_event_id != event_id")


def upgrade() -> None:
    op.create_index("ix_installs_report", "installs", ["app_id", "installed_at_ms"],
                    postgresql_include=["attributed", "network", "campaign"],
                    postgresql_where=sa.text(LIVE[0]), sqlite_where=sa.text(LIVE[1]))
    op.create_index("ix_installs_report_reinstalls", "installs", ["app_id", "last_install_at_ms"],
                    postgresql_include=["attributed", "network", "campaign"],
                    postgresql_where=sa.text(REINSTALLED[0]), sqlite_where=sa.text(REINSTALLED[1]))
    op.create_index("ix_audit_report", "audit_log", ["app_id", "recorded_at_ms"],
                    postgresql_include=["network", "status", "event_name", "event_id"])
    op.create_index("ix_skan_postbacks_app_received", "skan_postbacks", ["app_id", "received_at_ms"])


def downgrade() -> None:
    op.drop_index("ix_skan_postbacks_app_received", table_name="skan_postbacks")
    op.drop_index("ix_audit_report", table_name="audit_log")
    op.drop_index("ix_installs_report_reinstalls", table_name="installs")
    op.drop_index("ix_installs_report", table_name="installs")
