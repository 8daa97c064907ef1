"""Audit writer: audit.records -> audit_log, one multi-row idempotent insert per batch."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import AuditEntry
from shared.db.upsert import insert_ignoring_duplicates
from shared.kafka.consumer import TransientError
from shared.kafka.records import InRecord, OutRecord, dead_letter_of
from shared.kafka.topics import AUDIT_RECORDS

SERVICE = "audit"
TOPICS = (AUDIT_RECORDS,)


class AuditHandler:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def __call__(self, records: list[InRecord]) -> list[OutRecord]:
        rows, rejected = [], []
        for record in records:
            if record.schema == "apprefer.AuditRecord":
                rows.append(record.value)
            else:
                rejected.append(dead_letter_of(record, f"unexpected schema {record.schema}", SERVICE))
        try:
            with self._sessions.begin() as session:
                # audit_id is unique: a batch delivered again after a crash adds no rows.
                insert_ignoring_duplicates(session, AuditEntry, rows)
        except OperationalError as exc:
            raise TransientError(str(exc)) from exc
        return rejected
