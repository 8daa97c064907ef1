"""The SKAN guide's three simulated test apps, built in: apps.test_app, and the apps with their schemas

An ad network testing its integration against a fresh install posts the guide's simulated postbacks
(apps 888707085, 888707086 and 888707087, unsigned) and expects them decoded and sent back. They are
seeded here, once, marked `test_app`, with signature_policy "skip" (the guide's postbacks carry no
valid signature); an app that already has one of these App Store ids is left alone.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

VALID_FROM_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z
# Frozen here (a migration must not change with the code): apple app id, name, conversion schema.
TEST_APPS: tuple[tuple[str, str, dict[str, object]], ...] = (
    ("888707085", "SKAN test app 888707085 (revenue, $1 units)",
     {"mode": "revenue", "event_name": "af_skad_revenue", "currency": "USD", "unit": 1.0}),
    ("888707086", "SKAN test app 888707086 (conversion bits)",
     {"mode": "conversion", "events": ["af_level_complete", "af_login", "af_skad_revenue", "af_register",
                                       "af_subscription", "af_custom_event"]}),
    ("888707087", "SKAN test app 888707087 (engagement)", {"mode": "engagement", "event_name": "af_skad_revenue"}),
)


def app_id_of(apple_app_id: str) -> str:
    return f"app_skantest_{apple_app_id}"


def upgrade() -> None:
    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("test_app", sa.Boolean(), server_default=sa.false(), nullable=False))
    apps = sa.table("apps", sa.column("app_id"), sa.column("name"), sa.column("platform"), sa.column("store_url"),
                    sa.column("apple_app_id"), sa.column("lookback_days"), sa.column("fingerprint_window_hours"),
                    sa.column("reattribution_days"), sa.column("max_revenue_amount"), sa.column("created_at_ms"),
                    sa.column("test_app", sa.Boolean()))
    schemas = sa.table("skan_conversion_schemas", sa.column("app_id"), sa.column("schema_id"),
                       sa.column("valid_from_ms"), sa.column("body", sa.JSON()), sa.column("updated_at_ms"))
    connection = op.get_bind()
    now_ms = int(time.time() * 1000)
    for apple_app_id, name, schema in TEST_APPS:
        taken = connection.execute(sa.select(apps.c.app_id).where(apps.c.apple_app_id == apple_app_id)).first()
        if taken is not None:
            continue
        app_id = app_id_of(apple_app_id)
        schema_id = f"skan-test-{schema['mode']}"
        connection.execute(apps.insert().values(
            app_id=app_id, name=name, platform="ios", store_url=f"https://apps.apple.com/app/id{apple_app_id}",
            apple_app_id=apple_app_id, lookback_days=7, fingerprint_window_hours=24, reattribution_days=90,
            max_revenue_amount=1_000_000.0, created_at_ms=now_ms, test_app=True))
        connection.execute(schemas.insert().values(
            app_id=app_id, schema_id=schema_id, valid_from_ms=VALID_FROM_MS, updated_at_ms=now_ms,
            body={"schema_id": schema_id, "valid_from": "2020-01-01T00:00:00Z", "signature_policy": "skip", **schema}))


def downgrade() -> None:
    for apple_app_id, _name, _schema in TEST_APPS:
        app_id = app_id_of(apple_app_id)
        for table in ("skan_conversion_schemas", "api_keys", "tracking_links", "integrations", "apps"):
            op.execute(sa.text(f"DELETE FROM {table} WHERE app_id = :app_id").bindparams(app_id=app_id))
    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.drop_column("test_app")
