"""Audit writer: audit.records -> audit_log, one multi-row idempotent insert per batch, and the events they tell
of -> audit_events (shared/reports/events.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from services.catalog import consumer_topics
from shared.db.models import AuditEntry
from shared.db.upsert import insert_ignoring_duplicates
from shared.kafka.records import InRecord, OutRecord
from shared.reports.events import record_audit_events
from shared.reports.stale import mark_stale

SERVICE = "audit"
TOPICS = consumer_topics(SERVICE)


class AuditHandler:
    SCHEMAS = frozenset({"apprefer.AuditRecord"})  # the loop dead-letters any other

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def __call__(self, records: list[InRecord]) -> list[OutRecord]:
        with self._sessions.begin() as session:
            write_audit_rows(session, [record.value for record in records])
        return []


def write_audit_rows(session: Session, values: list[dict[str, Any]], now_ms: int | None = None) -> None:
    # audit_id is unique: a batch delivered again after a crash adds no rows.
    insert_ignoring_duplicates(session, AuditEntry, values)
    record_audit_events(session, values, now_ms)  # what the report's conversions count
    # Rows of a day already over (audited after midnight): the report rolls that day again.
    mark_stale(session, "audit_log", [(value["app_id"], value["recorded_at_ms"]) for value in values], now_ms)
