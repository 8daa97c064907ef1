"""Audit writer: audit.records -> audit_log, one multi-row idempotent insert per batch."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from services.catalog import consumer_topics
from shared.db.models import AuditEntry
from shared.db.upsert import insert_ignoring_duplicates
from shared.kafka.records import InRecord, OutRecord
from shared.reports.stale import mark_stale

SERVICE = "audit"
TOPICS = consumer_topics(SERVICE)


class AuditHandler:
    SCHEMAS = frozenset({"apprefer.AuditRecord"})  # the loop dead-letters any other

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def __call__(self, records: list[InRecord]) -> list[OutRecord]:
        with self._sessions.begin() as session:
            # audit_id is unique: a batch delivered again after a crash adds no rows.
            insert_ignoring_duplicates(session, AuditEntry, [record.value for record in records])
            # Rows of a day already over (audited after midnight): the report rolls that day again.
            mark_stale(session, "audit_log", [(r.value["app_id"], r.value["recorded_at_ms"]) for r in records])
        return []
