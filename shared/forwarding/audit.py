"""Audit records: one per outcome, produced to audit.records and written by the audit service."""

from __future__ import annotations

import hashlib
import time
import uuid

from shared.avro import AvroCodec
from shared.kafka.records import OutRecord
from shared.kafka.topics import AUDIT_RECORDS

STATUSES = ("delivered", "rejected", "sandbox", "skipped", "dead_lettered", "retrying")


def delivered_audit_id(event_id: str, network: str) -> str:
    """One `delivered` row per (event, network), however often it is written: the forwarder can
    write it again after a crash that lost it, and the audit table keeps the first."""
    return "delivered:" + hashlib.sha256(f"{event_id}\x1f{network}".encode()).hexdigest()[:48]


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
    audit_id: str | None = None,
) -> OutRecord:
    assert status in STATUSES, status
    record = {
        "audit_id": audit_id or uuid.uuid4().hex, "app_id": app_id, "event_id": event_id, "event_name": event_name,
        "network": network, "status": status, "attempts": attempts, "http_status": http_status,
        "error_code": error_code, "detail": detail[:1000] if detail else None, "latency_ms": latency_ms,
        "request_hash": request_hash, "recorded_at_ms": int(time.time() * 1000),
    }
    return OutRecord(topic=AUDIT_RECORDS, key=event_id.encode(), value=codec.encode("apprefer.AuditRecord", record))
