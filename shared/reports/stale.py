"""Marking closed days stale: a writer that changes a report's rows of a day already over (a late event, an audit
row written after midnight, a postback's second copy, an erasure) records the app-day in the same transaction,
and the roller rolls that day's figures of the table again (audit_events: the days an event moved between,
shared/reports/events.py). Writes of today cost nothing: the roller has not
rolled today yet, and rolls a day only once it has been over for APPREFER_ROLLUP_SETTLE_SECONDS, longer than a
transaction begun before midnight takes to commit."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import insert
from sqlalchemy.orm import Session

from shared import runtime
from shared.db.models import ReportStaleDay
from shared.reports.figures import DAY_MS

# The tables the report reads, each the source of its sections' rollups.
SOURCES: dict[str, tuple[str, ...]] = {
    "installs": ("installs",),
    "audit_events": ("conversions",),
    "audit_log": ("forwards",),
    "skan_postbacks": ("skan",),
}


def mark_stale(session: Session, source: str, changes: Iterable[tuple[str | None, int | None]],
               now_ms: int | None = None) -> int:
    """Marks each (app_id, epoch ms) the transaction changed whose UTC day is over; returns the marks written."""
    assert source in SOURCES, source
    now_ms = runtime.now_ms() if now_ms is None else now_ms
    today = now_ms // DAY_MS
    days = {(app_id, at // DAY_MS) for app_id, at in changes
            if app_id is not None and at is not None and at // DAY_MS < today}
    if days:
        session.execute(insert(ReportStaleDay), [
            {"app_id": app_id, "day": day, "source": source, "marked_at_ms": now_ms}
            for app_id, day in sorted(days)])
    return len(days)
