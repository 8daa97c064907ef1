"""Admin events: who (the admin token's id) did what (a mutating admin request) to which app, and its answer.
Never a request's body: bodies hold credentials and personal data."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from services.admin.stores.base import StoreBase
from shared.db.models import AdminEvent
from shared.runtime import now_ms


def admin_event_json(event: AdminEvent) -> dict[str, Any]:
    return {"id": event.id, "at_ms": event.at_ms, "token_id": event.token_id, "action": event.action,
            "method": event.method, "path": event.path, "app_id": event.app_id, "status": event.status}


class AdminEventsStore(StoreBase):
    def record_admin_event(self, *, token_id: str, action: str, method: str, path: str, app_id: str | None,
                           status: int) -> None:
        with self._sessions.begin() as session:
            session.add(AdminEvent(at_ms=now_ms(), token_id=token_id[:32], action=action[:80], method=method[:10],
                                   path=path[:500], app_id=app_id, status=status))

    def admin_events(self, app_id: str | None, limit: int, before: int | None = None
                     ) -> tuple[list[dict[str, Any]], int | None]:
        """Up to `limit` events, newest first (by id: the order they were recorded in), older than the event
        `before` when given; and the id to ask the next page before (None on the last page)."""
        query = select(AdminEvent)
        if app_id:
            query = query.where(AdminEvent.app_id == app_id)
        if before is not None:
            query = query.where(AdminEvent.id < before)
        with self._sessions() as session:
            events = list(session.scalars(query.order_by(AdminEvent.id.desc()).limit(limit + 1)))
        more = len(events) > limit
        events = events[:limit]
        return [admin_event_json(e) for e in events], events[-1].id if more else None
