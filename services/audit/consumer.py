"""Audit writer: audit.records -> audit_log, one multi-row idempotent insert per batch."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from services.catalog import consumer_topics
from shared.db.models import AuditEntry
from shared.db.upsert import insert_ignoring_duplicates
from shared.kafka.records import InRecord, OutRecord

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
        return []
