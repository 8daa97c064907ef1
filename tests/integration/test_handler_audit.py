"""The audit writer on its own: audit.records in, audit_log rows written, against a migrated PostgreSQL, no broker.

It emits nothing: a record that is not an audit record is dead-lettered by the consumer loop before the handler
sees it (its SCHEMAS). Records are built as the consumer loop decodes them (the Avro codec fills every default).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from services.audit.consumer import SERVICE, TOPICS, AuditHandler
from shared.avro import codec
from shared.db.models import AuditEntry, AuditEvent, ReportStaleDay
from shared.db.session import make_engine, make_sessionmaker
from shared.kafka.records import InRecord, header
from shared.kafka.topics import AUDIT_RECORDS
from shared.reports.figures import DAY_MS
from tests.integration.test_handler_attribution import through_the_loop

pytestmark = pytest.mark.timeout(60)

NOW = int(time.time() * 1000)
COLUMNS = ("audit_id", "app_id", "event_id", "event_name", "network", "status", "attempts", "http_status",
           "error_code", "detail", "latency_ms", "request_hash", "recorded_at_ms")


@pytest.fixture
def sessions(migrated_pg_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(migrated_pg_url)
    yield make_sessionmaker(engine)
    engine.dispose()


class Feed:
    def __init__(self) -> None:
        self.offset = 0

    def record(self, schema: str, value: dict[str, Any], key: bytes | None = None) -> InRecord:
        self.offset += 1
        raw = codec().encode(schema, value)
        decoded_schema, decoded = codec().decode(raw)
        assert decoded_schema == schema
        return InRecord(topic=AUDIT_RECORDS, partition=0, offset=self.offset, key=key, raw_value=raw, headers=[],
                        schema=schema, value=decoded)

    def audit(self, audit_id: str, **fields: Any) -> InRecord:
        value = {"audit_id": audit_id, "app_id": "app_a", "event_id": f"event-{audit_id}", "network": "meta",
                 "status": "delivered", "recorded_at_ms": NOW, **fields}
        return self.record("apprefer.AuditRecord", value, key=value["event_id"].encode())


def rows(sessions: sessionmaker[Session]) -> dict[str, dict[str, Any]]:
    with sessions() as session:
        return {row.audit_id: {c: getattr(row, c) for c in COLUMNS} for row in session.scalars(select(AuditEntry))}


def test_audit_records_become_rows_with_every_field(sessions: sessionmaker[Session]) -> None:
    feed = Feed()
    delivered = feed.audit("a-1", event_name="purchase", attempts=1, http_status=200, latency_ms=41,
                           request_hash="ab" * 32)
    rejected = feed.audit("a-2", network="tiktok", status="rejected", attempts=2, http_status=400,
                          error_code="40002", detail="invalid event_source", latency_ms=120)
    skipped = feed.audit("a-3", network="google_ads", status="skipped", detail="no gclid")  # defaults only
    assert AuditHandler(sessions)([delivered, rejected, skipped]) == []  # nothing emitted

    assert rows(sessions) == {
        "a-1": {**dict.fromkeys(COLUMNS), "audit_id": "a-1", "app_id": "app_a", "event_id": "event-a-1",
                "event_name": "purchase", "network": "meta", "status": "delivered", "attempts": 1,
                "http_status": 200, "latency_ms": 41, "request_hash": "ab" * 32, "recorded_at_ms": NOW},
        "a-2": {**dict.fromkeys(COLUMNS), "audit_id": "a-2", "app_id": "app_a", "event_id": "event-a-2",
                "network": "tiktok", "status": "rejected", "attempts": 2, "http_status": 400,
                "error_code": "40002", "detail": "invalid event_source", "latency_ms": 120, "recorded_at_ms": NOW},
        "a-3": {**dict.fromkeys(COLUMNS), "audit_id": "a-3", "app_id": "app_a", "event_id": "event-a-3",
                "network": "google_ads", "status": "skipped", "attempts": 0, "detail": "no gclid",
                "recorded_at_ms": NOW},
    }


def test_a_replay_writes_no_duplicate_rows_and_the_first_write_stands(sessions: sessionmaker[Session]) -> None:
    feed = Feed()
    batch = [feed.audit("a-1"), feed.audit("a-2", status="retrying", attempts=1)]
    handler = AuditHandler(sessions)
    assert handler(batch) == []
    written = rows(sessions)

    assert handler(batch) == []  # redelivered after a crash
    assert AuditHandler(sessions)(batch) == []  # to a new process
    # The same audit id inside one batch, and once more with other values next to a new record.
    changed = feed.audit("a-2", status="delivered", attempts=9)
    assert handler([batch[0], batch[0], changed, feed.audit("a-3")]) == []

    after = rows(sessions)
    assert sorted(after) == ["a-1", "a-2", "a-3"]
    assert {k: after[k] for k in ("a-1", "a-2")} == written  # a redelivered outcome never rewrites the row
    assert (after["a-2"]["status"], after["a-2"]["attempts"]) == ("retrying", 1)
    with sessions() as session:
        assert len(list(session.scalars(select(AuditEntry.id)))) == 3


def test_a_record_of_an_unexpected_schema_is_dead_lettered_by_the_loop_and_the_rest_is_written(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch,
) -> None:
    feed = Feed()
    good = feed.audit("a-1")
    stray = feed.record("apprefer.Click", {"click_key": "c-1", "app_id": "app_a", "clicked_at_ms": NOW}, key=b"c-1")
    later = feed.audit("a-2")
    (letter,), _ = through_the_loop(AuditHandler(sessions), SERVICE, TOPICS, [good, stray, later],
                                    monkeypatch)  # does not raise

    assert letter.topic == f"{AUDIT_RECORDS}.dlq"
    assert letter.value == stray.raw_value and letter.key == b"c-1"
    assert header(letter.headers, "dlq.error") == b"unexpected schema apprefer.Click"
    assert header(letter.headers, "dlq.source_topic") == AUDIT_RECORDS.encode()
    assert header(letter.headers, "dlq.source_offset") == str(stray.offset).encode()
    assert header(letter.headers, "dlq.service") == SERVICE.encode()
    assert sorted(rows(sessions)) == ["a-1", "a-2"]


def test_an_empty_batch_writes_nothing(sessions: sessionmaker[Session]) -> None:
    assert AuditHandler(sessions)([]) == []
    assert rows(sessions) == {}


def stale_marks(sessions: sessionmaker[Session]) -> list[tuple[str, int, str]]:
    with sessions() as session:
        return sorted(session.execute(select(ReportStaleDay.app_id, ReportStaleDay.day, ReportStaleDay.source)).all())


def test_rows_of_a_day_already_over_mark_it_for_the_reports_roller(sessions: sessionmaker[Session]) -> None:
    feed = Feed()
    yesterday = NOW - DAY_MS
    AuditHandler(sessions)([feed.audit("a-1"), feed.audit("a-2", recorded_at_ms=yesterday),
                            feed.audit("a-3", app_id="app_b", recorded_at_ms=yesterday - 1)])
    day = yesterday // DAY_MS
    assert stale_marks(sessions) == [("app_a", day, "audit_events"), ("app_a", day, "audit_log"),
                                     ("app_b", (yesterday - 1) // DAY_MS, "audit_events"),
                                     ("app_b", (yesterday - 1) // DAY_MS, "audit_log")]  # today's row: none


def audit_events(sessions: sessionmaker[Session]) -> dict[tuple[str, str], tuple[Any, ...]]:
    with sessions() as session:
        return {(r.app_id, r.event_id): (r.first_ms, r.delivered_ms, r.event_name)
                for r in session.scalars(select(AuditEvent))}


def test_audit_events_keep_each_events_first_row_and_first_delivery_whatever_the_order(
        sessions: sessionmaker[Session]) -> None:
    feed = Feed()
    rows = [feed.audit("r-1", event_id="e-1", status="retrying", recorded_at_ms=NOW - 5000),
            feed.audit("r-2", event_id="e-1", status="delivered", event_name="purchase", recorded_at_ms=NOW - 3000),
            feed.audit("r-3", event_id="e-1", network="tiktok", status="delivered", recorded_at_ms=NOW - 4000),
            feed.audit("r-4", event_id="e-2", status="sandbox", recorded_at_ms=NOW),  # a pk_test_ event: none
            feed.audit("r-5", event_id="pb-1", network="skan_postback", recorded_at_ms=NOW)]  # a postback: none
    handler = AuditHandler(sessions)
    handler(rows[2:])  # the later rows first
    handler(rows[:2])
    handler(rows)  # and all of them again
    assert audit_events(sessions) == {("app_a", "e-1"): (NOW - 5000, NOW - 4000, "purchase")}
    assert stale_marks(sessions) == []  # all of today

    # A row audited late, of yesterday, moves the event's first row there: both days are marked.
    handler([feed.audit("r-6", event_id="e-1", status="rejected", recorded_at_ms=NOW - DAY_MS)])
    assert audit_events(sessions) == {("app_a", "e-1"): (NOW - DAY_MS, NOW - 4000, "purchase")}
    assert stale_marks(sessions) == [("app_a", (NOW - DAY_MS) // DAY_MS, "audit_events"),
                                     ("app_a", (NOW - DAY_MS) // DAY_MS, "audit_log")]
