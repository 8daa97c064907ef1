"""Audit records: one per outcome, produced to audit.records and written by the audit service."""

from __future__ import annotations

import time
import uuid

from shared.avro import AvroCodec
from shared.kafka.records import OutRecord
from shared.kafka.topics import AUDIT_RECORDS

STATUSES = ("delivered", "rejected", "sandbox", "skipped", "dead_lettered", "retrying")


def audit_out(
    codec: AvroCodec,
    *,
    app_id: str,
    event_id: str,
    network: str,
    status: str,
    event_name: str | None = None,
    attempts: int = 0,
    http_status: int | None = None,
    error_code: str | None = None,
    detail: str | None = None,
    latency_ms: int | None = None,
    request_hash: str | None = None,
) -> OutRecord:
    assert status in STATUSES, status
    record = {
        "audit_id": uuid.uuid4().hex, "app_id": app_id, "event_id": event_id, "event_name": event_name,
        "network": network, "status": status, "attempts": attempts, "http_status": http_status,
        "error_code": error_code, "detail": detail[:1000] if detail else None, "latency_ms": latency_ms,
        "request_hash": request_hash, "recorded_at_ms": int(time.time() * 1000),
    }
    return OutRecord(topic=AUDIT_RECORDS, key=event_id.encode(), value=codec.encode("apprefer.AuditRecord", record))
