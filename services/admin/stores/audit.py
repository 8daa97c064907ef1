"""The audit log: newest first, in keyset pages (`WHERE id < cursor ORDER BY id DESC`), so a page costs the
same at the millionth row as at the first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from services.admin.stores.base import StoreBase
from shared.db.models import (
    AuditEntry,
)

AUDIT_FILTERS = ("app_id", "event_id", "network", "status")


@dataclass(frozen=True, slots=True)
class AuditQuery:
    app_id: str | None = None
    event_id: str | None = None
    network: str | None = None
    status: str | None = None
    since_ms: int | None = None  # recorded_at_ms at or after
    until_ms: int | None = None  # recorded_at_ms at or before
    before_id: int | None = None  # the cursor: rows older than this one
    limit: int = 100


def audit_json(r: AuditEntry) -> dict[str, Any]:
    return {"app_id": r.app_id, "event_id": r.event_id, "event_name": r.event_name, "network": r.network,
            "status": r.status, "attempts": r.attempts, "last_error": r.detail if r.status != "delivered" else None,
            "detail": r.detail, "http_status": r.http_status, "error_code": r.error_code,
            "latency_ms": r.latency_ms, "request_hash": r.request_hash, "recorded_at_ms": r.recorded_at_ms}


class AuditStore(StoreBase):
    def audit_page(self, query: AuditQuery) -> tuple[list[dict[str, Any]], int | None]:
        """The matching rows, newest (highest id) first, and the id to continue below (None: no more)."""
        statement = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(query.limit + 1)
        for name in AUDIT_FILTERS:
            value = getattr(query, name)
            if value:
                statement = statement.where(getattr(AuditEntry, name) == value)
        if query.since_ms is not None:
            statement = statement.where(AuditEntry.recorded_at_ms >= query.since_ms)
        if query.until_ms is not None:
            statement = statement.where(AuditEntry.recorded_at_ms <= query.until_ms)
        if query.before_id is not None:
            statement = statement.where(AuditEntry.id < query.before_id)
        with self._sessions() as session:
            rows = list(session.scalars(statement))
        more = len(rows) > query.limit
        rows = rows[:query.limit]
        return [audit_json(r) for r in rows], rows[-1].id if more else None
