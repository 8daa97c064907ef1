"""The dashboard's sessions: one row per sign-in, found by the SHA-256 of the cookie's secret (never the secret),
ended by sign-out (the row deleted) or by its expiry. Expired rows are deleted at the next sign-in, a bounded
number at a time."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select

from services.admin.stores.base import StoreBase
from shared.db.models import DashboardSession

PURGE_BATCH = 1000  # expired rows deleted per sign-in: a backlog goes in steps, never in one long statement


@dataclass(frozen=True, slots=True)
class SessionRecord:
    secret_hash: str
    token_id: str
    csrf_token: str
    created_at_ms: int
    expires_at_ms: int


class DashboardSessionsStore(StoreBase):
    def create_dashboard_session(self, record: SessionRecord) -> None:
        """Stores a new session, and deletes up to PURGE_BATCH sessions expired before its creation."""
        with self._sessions.begin() as session:
            expired = select(DashboardSession.secret_hash).where(
                DashboardSession.expires_at_ms <= record.created_at_ms).limit(PURGE_BATCH)
            session.execute(delete(DashboardSession).where(DashboardSession.secret_hash.in_(expired.scalar_subquery())))
            session.add(DashboardSession(secret_hash=record.secret_hash, token_id=record.token_id,
                                         csrf_token=record.csrf_token, created_at_ms=record.created_at_ms,
                                         expires_at_ms=record.expires_at_ms))

    def dashboard_session(self, secret_hash: str) -> SessionRecord | None:
        """The session of this hash, expired or not (the caller compares times), or None."""
        with self._sessions() as session:
            row = session.get(DashboardSession, secret_hash)
            if row is None:
                return None
            return SessionRecord(row.secret_hash, row.token_id, row.csrf_token, row.created_at_ms, row.expires_at_ms)

    def end_dashboard_session(self, secret_hash: str) -> None:
        with self._sessions.begin() as session:
            session.execute(delete(DashboardSession).where(DashboardSession.secret_hash == secret_hash))
