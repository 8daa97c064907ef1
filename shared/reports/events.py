"""audit_events: what the report's conversions count, kept by the audit writer as it writes audit rows.

An event is a conversion from its audit rows (those for an enabled integration), sandbox rows and the SKAN
forwards (their ids are postback ids) aside: it counts once, on the day of its first audit row, and as delivered
once, on the day of its first delivered row. The writer keeps, per event, the smallest of each time and the
greatest name seen, so a batch delivered twice, or rows arriving out of order, leave the same row. The rows of
an event share its Kafka key (audit.records is keyed by event id), so one writer at a time handles an event.

A row changed to an earlier time moves the event from one day to another: both days are marked stale when
they are over (shared/reports/stale.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from shared.db.models import AuditEvent
from shared.db.upsert import upsert
from shared.networks.registry import registry
from shared.networks.spec import Feed
from shared.reports.stale import mark_stale

Key = tuple[str, str]  # (app_id, event_id)


def skan_networks() -> list[str]:
    return sorted(spec.name for spec in registry().fed_by(Feed.SKAN))


def _earliest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _greatest(a: str | None, b: str | None) -> str | None:
    return b if a is None else a if b is None else max(a, b)


def summarise(rows: Iterable[Mapping[str, Any]]) -> dict[Key, dict[str, Any]]:
    """Per event, what these audit rows say of it (pure): first_ms, delivered_ms, event_name."""
    skan = set(skan_networks())
    found: dict[Key, dict[str, Any]] = {}
    for row in rows:
        if row["status"] == "sandbox" or row["network"] in skan:
            continue
        at = row["recorded_at_ms"]
        delivered = at if row["status"] == "delivered" else None
        key = (row["app_id"], row["event_id"])
        known = found.get(key)
        if known is None:
            found[key] = {"first_ms": at, "delivered_ms": delivered, "event_name": row.get("event_name")}
        else:
            known["first_ms"] = min(known["first_ms"], at)
            known["delivered_ms"] = _earliest(known["delivered_ms"], delivered)
            known["event_name"] = _greatest(known["event_name"], row.get("event_name"))
    return found


def merged(stored: Mapping[str, Any] | None, seen: Mapping[str, Any]) -> dict[str, Any]:
    """The row after `seen` (pure): the earliest times, the greatest name."""
    if stored is None:
        return dict(seen)
    return {"first_ms": min(stored["first_ms"], seen["first_ms"]),
            "delivered_ms": _earliest(stored["delivered_ms"], seen["delivered_ms"]),
            "event_name": _greatest(stored["event_name"], seen["event_name"])}


def record_audit_events(session: Session, rows: Iterable[Mapping[str, Any]], now_ms: int | None = None) -> int:
    """Folds audit rows into audit_events in the caller's transaction; returns the events changed. Writes only
    what changes (a retry of an event already delivered writes nothing), and marks the days it moves events
    between."""
    seen = summarise(rows)
    if not seen:
        return 0
    keys = sorted(seen)
    event_ids = sorted({event_id for _, event_id in keys})
    stored: dict[Key, dict[str, Any]] = {}
    # By event id alone, the ids written into the statement (quoted by SQLAlchemy) rather than bound: PostgreSQL
    # then plans each look-up for its own values, by the primary key (event_id, app_id) or, on a small table, a
    # scan that hashes them. Bound, the statement was prepared and its generic plan compared every row with each
    # of the 500 parameters in turn (100+ ms a batch at 25,000 events). Another app's event of the same id is
    # read and left.
    for start in range(0, len(event_ids), 500):
        chunk: Any = bindparam("event_ids", event_ids[start:start + 500], expanding=True, literal_execute=True)
        for row in session.execute(select(AuditEvent.app_id, AuditEvent.event_id, AuditEvent.first_ms,
                                          AuditEvent.delivered_ms, AuditEvent.event_name)
                                   .where(AuditEvent.event_id.in_(chunk))):
            if (row.app_id, row.event_id) in seen:
                stored[(row.app_id, row.event_id)] = {"first_ms": row.first_ms, "delivered_ms": row.delivered_ms,
                                                      "event_name": row.event_name}
    changed: list[dict[str, Any]] = []
    moved: list[tuple[str, int | None]] = []
    for key in keys:  # in key order: two writers never lock the same rows in opposite orders
        before = stored.get(key)
        after = merged(before, seen[key])
        if after == before:
            continue
        changed.append({"app_id": key[0], "event_id": key[1], **after})
        for field in ("first_ms", "delivered_ms"):
            if before is None or before[field] != after[field] or before["event_name"] != after["event_name"]:
                moved += [(key[0], after[field]), (key[0], before[field] if before else None)]
    upsert(session, AuditEvent, changed, ("app_id", "event_id"), ("first_ms", "delivered_ms", "event_name"))
    mark_stale(session, "audit_events", moved, now_ms)
    return len(changed)
