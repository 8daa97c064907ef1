"""Integrations read by fanout and forwarders: cached, and refreshed when the admin API changes them.

The cache is checked against `max(updated_at_ms)` and the number of the app's integrations, one cheap
indexed query per app per batch, so a change made through the admin API (in another process) is seen
by the next batch without a message bus.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.crypto import decrypt_credentials
from shared.db.models import Integration as IntegrationRow
from shared.forwarding.model import Integration


class IntegrationCache:
    def __init__(self, secret_key: str | None) -> None:
        self._secret_key = secret_key
        self._by_app: dict[str, tuple[tuple[object, ...], dict[str, Integration]]] = {}

    def for_app(self, session: Session, app_id: str) -> dict[str, Integration]:
        """The app's integrations by network (enabled or not), credentials decrypted."""
        # The count too: deleting an integration other than the newest leaves max(updated_at_ms) as it was.
        version = tuple(session.execute(
            select(func.max(IntegrationRow.updated_at_ms), func.count()).where(IntegrationRow.app_id == app_id)
        ).one())
        cached = self._by_app.get(app_id)
        if cached is not None and cached[0] == version:
            return cached[1]
        rows = session.scalars(select(IntegrationRow).where(IntegrationRow.app_id == app_id))
        loaded = {row.network: self._decrypted(row) for row in rows}
        self._by_app[app_id] = (version, loaded)
        return loaded

    def _decrypted(self, row: IntegrationRow) -> Integration:
        credentials = {}
        if row.credentials_encrypted and self._secret_key:
            credentials = decrypt_credentials(self._secret_key, row.credentials_encrypted)
        return Integration(app_id=row.app_id, network=row.network, settings=dict(row.settings or {}),
                           credentials=credentials, event_map=dict(row.event_map or {}), enabled=row.enabled)
