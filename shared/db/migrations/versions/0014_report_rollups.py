"""The report's daily rollups (shared/reports/), and audit_events

Per app and UTC day, the report's figures at the finest keys it groups by: installs and reinstalls per
attribution, network and campaign; conversions per event name; forwards per network and status; SKAN postbacks
and their decoded records per ad network, campaign and country. The roller (in the audit service, and `apprefer
db rollup`) writes them for closed days from the raw rows; `report_rollup_state` says which days are rolled,
`report_stale_days` which of them a writer changed since. A report reads rollups for whole rolled days and the raw
rows for the rest.

audit_events: per event the report counts as a conversion, its first audit row's time, its first delivery's
and its name, kept by the audit writer; filled here from the audit rows already stored.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# (table, its key and figure columns): each also has id, app_id, day and an (app_id, day) index.
ROLLUPS: dict[str, list[sa.Column]] = {
    "report_install_days": [
        sa.Column("attributed", sa.Boolean(), nullable=False), sa.Column("network", sa.String(40)),
        sa.Column("campaign", sa.String(200)), sa.Column("installs", sa.Integer(), nullable=False),
        sa.Column("reinstalls", sa.Integer(), nullable=False)],
    "report_conversion_days": [
        sa.Column("event_name", sa.String(100)), sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("delivered", sa.Integer(), nullable=False)],
    "report_forward_days": [
        sa.Column("network", sa.String(40), nullable=False), sa.Column("status", sa.String(20), nullable=False),
        sa.Column("forwards", sa.Integer(), nullable=False)],
    "report_skan_days": [
        sa.Column("ad_network_id", sa.String(200)), sa.Column("campaign", sa.Text()), sa.Column("country", sa.Text()),
        sa.Column("postbacks", sa.Integer(), nullable=False),
        sa.Column("counted_as_install", sa.Integer(), nullable=False)],
    "report_skan_record_days": [
        sa.Column("ad_network_id", sa.String(200)), sa.Column("campaign", sa.Text()), sa.Column("country", sa.Text()),
        sa.Column("kind", sa.Text()), sa.Column("currency", sa.Text()),
        sa.Column("records", sa.Integer(), nullable=False), sa.Column("occurrences", sa.BigInteger(), nullable=False),
        sa.Column("revenue", sa.Float())],
}


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("event_id", sa.String(100), primary_key=True),
        sa.Column("app_id", sa.String(40), primary_key=True),
        sa.Column("event_name", sa.String(100)),
        sa.Column("first_ms", sa.BigInteger(), nullable=False),
        sa.Column("delivered_ms", sa.BigInteger()),
    )
    op.create_index("ix_audit_events_first", "audit_events", ["app_id", "first_ms"],
                    postgresql_include=["event_name"])
    op.create_index("ix_audit_events_delivered", "audit_events", ["app_id", "delivered_ms"],
                    postgresql_include=["event_name"])
    op.create_index("ix_audit_events_first_ms", "audit_events", ["first_ms"])
    # The networks a SKAN postback is forwarded to (their audit rows' ids are postback ids), as registered now.
    from shared.networks.registry import registry
    from shared.networks.spec import Feed

    skan = sorted(spec.name for spec in registry().fed_by(Feed.SKAN))
    op.execute(sa.text(
        "INSERT INTO audit_events (app_id, event_id, event_name, first_ms, delivered_ms) "
        "SELECT app_id, event_id, max(event_name), min(recorded_at_ms), "
        "min(CASE WHEN status = 'delivered' THEN recorded_at_ms END) FROM audit_log "
        "WHERE status <> 'sandbox' AND network NOT IN :skan GROUP BY app_id, event_id"
    ).bindparams(sa.bindparam("skan", skan, expanding=True)))
    op.create_table(
        "report_rollup_state",
        sa.Column("app_id", sa.String(40), primary_key=True),
        sa.Column("first_day", sa.Integer(), nullable=False),
        sa.Column("through_day", sa.Integer(), nullable=False),
        sa.Column("rolled_at_ms", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "report_stale_days",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("app_id", sa.String(40), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("marked_at_ms", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_report_stale_days_app_day", "report_stale_days", ["app_id", "day"])
    for table, columns in ROLLUPS.items():
        op.create_table(
            table,
            sa.Column("id", _ID, primary_key=True, autoincrement=True),
            sa.Column("app_id", sa.String(40), nullable=False),
            sa.Column("day", sa.Integer(), nullable=False),
            *columns,
        )
        op.create_index(f"ix_{table}_app_day", table, ["app_id", "day"])


def downgrade() -> None:
    for table in reversed(ROLLUPS):
        op.drop_index(f"ix_{table}_app_day", table_name=table)
        op.drop_table(table)
    op.drop_index("ix_report_stale_days_app_day", table_name="report_stale_days")
    op.drop_table("report_stale_days")
    op.drop_table("report_rollup_state")
    op.drop_index("ix_audit_events_first_ms", table_name="audit_events")
    op.drop_index("ix_audit_events_delivered", table_name="audit_events")
    op.drop_index("ix_audit_events_first", table_name="audit_events")
    op.drop_table("audit_events")
