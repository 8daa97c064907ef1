"""Tables. Times are epoch milliseconds (BIGINT): one representation on PostgreSQL and SQLite."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column


class Base(DeclarativeBase):
    pass


class App(Base):
    __tablename__ = "apps"

    app_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    platform: Mapped[str] = mapped_column(String(10))
    store_url: Mapped[str | None] = mapped_column(Text)
    bundle_id: Mapped[str | None] = mapped_column(String(200))
    apple_app_id: Mapped[str | None] = mapped_column(String(20), index=True)
    lookback_days: Mapped[int] = mapped_column(Integer, default=7)
    fingerprint_window_hours: Mapped[int] = mapped_column(Integer, default=24)
    reattribution_days: Mapped[int] = mapped_column(Integer, default=90)
    # The gateway refuses a revenue.amount above this (services/gateway/event_input.py,
    # DEFAULT_MAX_REVENUE_AMOUNT is the default; tests/unit/test_revenue_bound.py keeps them equal).
    max_revenue_amount: Mapped[float] = mapped_column(Float, default=1_000_000.0, server_default=text("1000000"))
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    deleted_at_ms: Mapped[int | None] = mapped_column(BigInteger)  # soft delete: its keys stop working at once
    # Built in for testing (the SKAN guide's simulated apps, seeded by migration 0009), not a customer's app.
    test_app: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.app_id", ondelete="CASCADE"), index=True)
    mode: Mapped[str] = mapped_column(String(4))  # live | test
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 hex of the whole key
    key_prefix: Mapped[str] = mapped_column(String(20))  # enough to recognise a key in a listing
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    revoked_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    expires_at_ms: Mapped[int | None] = mapped_column(BigInteger)  # a rotated key works until then (grace)


class TrackingLink(Base):
    __tablename__ = "tracking_links"

    link_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.app_id", ondelete="CASCADE"), index=True)
    network: Mapped[str | None] = mapped_column(String(40))
    campaign: Mapped[str | None] = mapped_column(String(200))
    store_url: Mapped[str | None] = mapped_column(Text)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    deleted_at_ms: Mapped[int | None] = mapped_column(BigInteger)  # its URL answers 404 from then on


class Integration(Base):
    __tablename__ = "integrations"

    app_id: Mapped[str] = mapped_column(ForeignKey("apps.app_id", ondelete="CASCADE"), primary_key=True)
    network: Mapped[str] = mapped_column(String(40), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    credentials_encrypted: Mapped[str | None] = mapped_column(Text)  # Fernet token; never returned
    event_map: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)


class Click(Base):
    __tablename__ = "clicks"
    __table_args__ = (
        UniqueConstraint("app_id", "click_key", name="uq_clicks_app_click_key"),
        Index("ix_clicks_app_click_id", "app_id", "click_id"),
        Index("ix_clicks_app_idfa", "app_id", "idfa"),
        Index("ix_clicks_app_gaid", "app_id", "gaid"),
        Index("ix_clicks_app_fingerprint", "app_id", "fingerprint"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(40))
    click_key: Mapped[str] = mapped_column(String(100))
    link_id: Mapped[str | None] = mapped_column(String(40))
    network: Mapped[str | None] = mapped_column(String(40))
    campaign: Mapped[str | None] = mapped_column(String(200))
    click_id_type: Mapped[str | None] = mapped_column(String(10))
    click_id: Mapped[str | None] = mapped_column(String(500))
    idfa: Mapped[str | None] = mapped_column(String(64))
    gaid: Mapped[str | None] = mapped_column(String(64))
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    clicked_at_ms: Mapped[int] = mapped_column(BigInteger)
    sandbox: Mapped[bool] = mapped_column(Boolean, default=False)


class Install(Base):
    """One row per device and mode: its install and the attribution every later event carries.
    Test (pk_test_) and live traffic of the same device keep separate rows: test traffic never
    shapes production attribution."""

    __tablename__ = "installs"

    app_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    sandbox: Mapped[bool] = mapped_column(Boolean, primary_key=True, default=False)
    event_id: Mapped[str] = mapped_column(String(100))  # the install event that set this row
    installed_at_ms: Mapped[int] = mapped_column(BigInteger)
    attributed: Mapped[bool] = mapped_column(Boolean)
    matched_by: Mapped[str | None] = mapped_column(String(20))
    network: Mapped[str | None] = mapped_column(String(40))
    campaign: Mapped[str | None] = mapped_column(String(200))
    click_id_type: Mapped[str | None] = mapped_column(String(10))
    click_id: Mapped[str | None] = mapped_column(String(500))
    click_key: Mapped[str | None] = mapped_column(String(100))
    click_time_ms: Mapped[int | None] = mapped_column(BigInteger)
    last_install_event_id: Mapped[str | None] = mapped_column(String(100))
    last_install_at_ms: Mapped[int | None] = mapped_column(BigInteger)


class Delivery(Base):
    """The delivery ledger: a job already delivered is never sent again (redelivery, replay)."""

    __tablename__ = "deliveries"

    event_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    network: Mapped[str] = mapped_column(String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(40))
    attempts: Mapped[int] = mapped_column(Integer)
    delivered_at_ms: Mapped[int] = mapped_column(BigInteger)


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_app_event", "app_id", "event_id"),
        Index("ix_audit_network_status", "network", "status"),
        Index("ix_audit_recorded", "recorded_at_ms"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    audit_id: Mapped[str] = mapped_column(String(64), unique=True)
    app_id: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[str] = mapped_column(String(100))
    event_name: Mapped[str | None] = mapped_column(String(100))
    network: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer)
    http_status: Mapped[int | None] = mapped_column(Integer)
    error_code: Mapped[str | None] = mapped_column(String(100))
    detail: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    request_hash: Mapped[str | None] = mapped_column(String(64))
    recorded_at_ms: Mapped[int] = mapped_column(BigInteger)


class DeviceIdentity(Base):
    """Other ids a device is known by (advertising ids, the hashed external user id), so events
    from elsewhere (RevenueCat webhooks) find the device and inherit its attribution."""

    __tablename__ = "device_identities"

    app_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)  # idfa | gaid | external_id
    value: Mapped[str] = mapped_column(String(100), primary_key=True)
    sandbox: Mapped[bool] = mapped_column(Boolean, primary_key=True, default=False)  # kept apart, as installs
    device_id: Mapped[str] = mapped_column(String(100))
    seen_at_ms: Mapped[int] = mapped_column(BigInteger)


class SkanConversionSchema(Base):
    __tablename__ = "skan_conversion_schemas"

    app_id: Mapped[str] = mapped_column(ForeignKey("apps.app_id", ondelete="CASCADE"), primary_key=True)
    schema_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    valid_from_ms: Mapped[int] = mapped_column(BigInteger)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)


class SkanPostback(Base):
    """One row per (transaction-id, postback-sequence-index): repeats only bump `duplicates`."""

    __tablename__ = "skan_postbacks"

    transaction_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    sequence_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[str | None] = mapped_column(String(40), index=True)
    apple_app_id: Mapped[str | None] = mapped_column(String(20))
    ad_network_id: Mapped[str | None] = mapped_column(String(200))
    version: Mapped[str | None] = mapped_column(String(10))
    signature: Mapped[str] = mapped_column(String(10))  # valid | invalid | skipped
    reason: Mapped[str | None] = mapped_column(Text)
    did_win: Mapped[bool] = mapped_column(Boolean)
    counted_as_install: Mapped[bool] = mapped_column(Boolean)
    conversion_value: Mapped[int | None] = mapped_column(Integer)
    coarse_conversion_value: Mapped[str | None] = mapped_column(String(10))
    value_source: Mapped[str] = mapped_column(String(10))  # network | apple
    sources: Mapped[str] = mapped_column(String(20))  # which copies arrived: network, apple, or both
    postback: Mapped[dict[str, Any]] = mapped_column(JSON)
    raw_body: Mapped[str] = mapped_column(Text)
    schema_id: Mapped[str | None] = mapped_column(String(100))
    records: Mapped[list[Any]] = mapped_column(JSON)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    received_at_ms: Mapped[int] = mapped_column(BigInteger)


class DlqReplay(Base):
    """Dead letters already replayed: a second `apprefer dlq replay` does not publish them again."""

    __tablename__ = "dlq_replays"

    topic: Mapped[str] = mapped_column(String(200), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    offset: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    replayed_to: Mapped[str] = mapped_column(String(200))
    event_id: Mapped[str | None] = mapped_column(String(100))
    replayed_at_ms: Mapped[int] = mapped_column(BigInteger)


class ErasureRequest(Base):
    """One erasure (services/privacy/erasure.py): which kinds of identifier were given, when, and how many rows
    of each table it deleted or anonymised. Never an identifier's value, not even hashed."""

    __tablename__ = "erasure_requests"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    erasure_id: Mapped[str] = mapped_column(String(40), unique=True)
    app_id: Mapped[str] = mapped_column(String(40), index=True)
    identifiers: Mapped[str] = mapped_column(String(100))  # the kinds given, e.g. "device_id,email"
    source: Mapped[str] = mapped_column(String(10))  # api | cli
    dry_run: Mapped[bool] = mapped_column(Boolean)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON)  # table -> rows deleted or anonymised
    requested_at_ms: Mapped[int] = mapped_column(BigInteger)
    completed_at_ms: Mapped[int] = mapped_column(BigInteger)


# Retention (services/privacy/retention.py) deletes by time, oldest first, in bounded batches. audit_log has its
# ix_audit_recorded already; these are declared apart from their tables' classes.
Index("ix_clicks_clicked_at", Click.clicked_at_ms)
Index("ix_installs_installed_at", Install.installed_at_ms)
Index("ix_skan_postbacks_received_at", SkanPostback.received_at_ms)
Index("ix_deliveries_delivered_at", Delivery.delivered_at_ms)

# The app report (services/admin/stores/reports.py, migration 0011): one app's rows in a time range, the grouped
# columns INCLUDEd on PostgreSQL (index-only scans); the installs ones partial (live rows; reinstalled rows).
_REPORT_INSTALL_COLUMNS = ("attributed", "network", "campaign")
Index("ix_installs_report", Install.app_id, Install.installed_at_ms, postgresql_include=_REPORT_INSTALL_COLUMNS,
      postgresql_where=text("NOT sandbox"), sqlite_where=text("sandbox = 0"))
Index("ix_installs_report_reinstalls", Install.app_id, Install.last_install_at_ms,
      postgresql_include=_REPORT_INSTALL_COLUMNS,
      postgresql_where=text("NOT sandbox AND last_install_event_id <> event_id"),
      sqlite_where=text("sandbox = 0 AND last_install_event_id != event_id"))
Index("ix_audit_report", AuditEntry.app_id, AuditEntry.recorded_at_ms,
      postgresql_include=("network", "status", "event_name", "event_id"))
Index("ix_skan_postbacks_app_received", SkanPostback.app_id, SkanPostback.received_at_ms)
# The audit log's keyset pages by event and by status (migration 0012).
Index("ix_audit_event_id", AuditEntry.event_id, AuditEntry.id)
Index("ix_audit_status_id", AuditEntry.status, AuditEntry.id)


class AdminEvent(Base):
    """Who (the admin token's id, never the token) did what through the admin API, to which app."""

    __tablename__ = "admin_events"
    __table_args__ = (Index("ix_admin_events_at", "at_ms"), Index("ix_admin_events_app_at", "app_id", "at_ms"))

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    token_id: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(80))  # "app.patch", "key.rotate", "integration.delete", ...
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(String(500))
    app_id: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[int] = mapped_column(Integer)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class DashboardSession(Base):
    """A dashboard sign-in (services/admin/dashboard/sessions.py). The cookie holds the session's secret; only its
    SHA-256 is stored, so a copy of this table signs nobody in. `token_id` is the admin token's id at sign-in: a
    changed APPREFER_ADMIN_TOKEN ends every session of the old one. Sign-out deletes the row."""

    __tablename__ = "dashboard_sessions"
    __table_args__ = (Index("ix_dashboard_sessions_expires", "expires_at_ms"),)

    secret_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 hex of the cookie's secret
    token_id: Mapped[str] = mapped_column(String(32))
    csrf_token: Mapped[str] = mapped_column(String(64))  # every form of the session carries it
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    expires_at_ms: Mapped[int] = mapped_column(BigInteger)


# ---------------------------------------------------------------------------------------- the report's rollups
# Daily figures of each app (shared/reports/): one row per UTC day number (epoch ms // 86,400,000) and key, at the
# finest keys the report groups by. Written only by the roller, which recomputes an app-day from the rows above
# (delete and insert in one transaction), never by increments: consumers are at-least-once. Keys may be null,
# so the rows carry an id, not a composite primary key.

_ID = BigInteger().with_variant(Integer, "sqlite")


class AuditEvent(Base):
    """One row per event the audit log knows of for the report's conversions (neither sandbox nor a SKAN forward):
    its first audit row's time, its first delivery's and its name. Kept by the audit writer with the smallest
    times and the greatest name seen (shared/reports/events.py): the same answer whatever order, and however
    often, its rows arrive."""

    __tablename__ = "audit_events"

    # The key is (event_id, app_id), event id first: the writer's look-up by event ids can take no other index,
    # whatever the planner's statistics say (an app's many events share its app_id prefix with the report's).
    event_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    event_name: Mapped[str | None] = mapped_column(String(100))
    first_ms: Mapped[int] = mapped_column(BigInteger)
    delivered_ms: Mapped[int | None] = mapped_column(BigInteger)


# A report's conversions read one app's span of first audit rows, and of first deliveries, from the index alone.
Index("ix_audit_events_first", AuditEvent.app_id, AuditEvent.first_ms, postgresql_include=("event_name",))
Index("ix_audit_events_delivered", AuditEvent.app_id, AuditEvent.delivered_ms, postgresql_include=("event_name",))
Index("ix_audit_events_first_ms", AuditEvent.first_ms)  # retention, oldest first


class ReportRollupState(Base):
    """Per app, the days rolled up: [first_day, through_day], each closed when rolled. A day in the span that is
    marked stale (report_stale_days) is answered from the raw rows until it is rolled again."""

    __tablename__ = "report_rollup_state"

    app_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    first_day: Mapped[int] = mapped_column(Integer)
    through_day: Mapped[int] = mapped_column(Integer)
    rolled_at_ms: Mapped[int] = mapped_column(BigInteger)


class ReportStaleDay(Base):
    """A closed day a writer changed after it closed (a late event, a late audit row, an erasure): the source
    table's sections of that app-day are rolled again. One row per mark, so that a roll deletes only the marks
    its snapshot has seen."""

    __tablename__ = "report_stale_days"
    __table_args__ = (Index("ix_report_stale_days_app_day", "app_id", "day"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    app_id: Mapped[str] = mapped_column(String(40))
    day: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(20))  # installs | audit_log | audit_events | skan_postbacks
    marked_at_ms: Mapped[int] = mapped_column(BigInteger)


class _RollupDay:
    """What every rollup table's rows have: an id, the app, the UTC day number; indexed (app_id, day)."""

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    app_id: Mapped[str] = mapped_column(String(40))
    day: Mapped[int] = mapped_column(Integer)

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        return (Index(f"ix_{cls.__tablename__}_app_day", "app_id", "day"),)  # type: ignore[attr-defined]


class ReportInstallDay(_RollupDay, Base):
    __tablename__ = "report_install_days"

    attributed: Mapped[bool] = mapped_column(Boolean)
    network: Mapped[str | None] = mapped_column(String(40))
    campaign: Mapped[str | None] = mapped_column(String(200))
    installs: Mapped[int] = mapped_column(Integer)
    reinstalls: Mapped[int] = mapped_column(Integer)


class ReportConversionDay(_RollupDay, Base):
    __tablename__ = "report_conversion_days"

    event_name: Mapped[str | None] = mapped_column(String(100))
    events: Mapped[int] = mapped_column(Integer)
    delivered: Mapped[int] = mapped_column(Integer)


class ReportForwardDay(_RollupDay, Base):
    __tablename__ = "report_forward_days"

    network: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))
    forwards: Mapped[int] = mapped_column(Integer)


class ReportSkanDay(_RollupDay, Base):
    __tablename__ = "report_skan_days"

    ad_network_id: Mapped[str | None] = mapped_column(String(200))
    campaign: Mapped[str | None] = mapped_column(Text)
    country: Mapped[str | None] = mapped_column(Text)
    postbacks: Mapped[int] = mapped_column(Integer)
    counted_as_install: Mapped[int] = mapped_column(Integer)


class ReportSkanRecordDay(_RollupDay, Base):
    """The decoded records of the postbacks counted as installs, per kind and currency."""

    __tablename__ = "report_skan_record_days"

    ad_network_id: Mapped[str | None] = mapped_column(String(200))
    campaign: Mapped[str | None] = mapped_column(Text)
    country: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str | None] = mapped_column(Text)
    currency: Mapped[str | None] = mapped_column(Text)
    records: Mapped[int] = mapped_column(Integer)
    occurrences: Mapped[int] = mapped_column(BigInteger)
    revenue: Mapped[float | None] = mapped_column(Float)
