"""The sessions and the secret key every admin store works with."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import App
from shared.errors import NotFound


class StoreBase:
    def __init__(self, sessions: sessionmaker[Session], secret_key: str | None) -> None:
        self._sessions = sessions
        self._secret_key = secret_key

    def ping(self) -> None:
        with self._sessions() as session:
            session.execute(select(1))

    @staticmethod
    def _require_app(session: Session, app_id: str) -> None:
        """A deleted app is not found: nothing new is configured for it (its data stays, for erasure)."""
        app = session.get(App, app_id)
        if app is None or app.deleted_at_ms is not None:
            raise NotFound(f"app {app_id} not found")
