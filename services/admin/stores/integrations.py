"""Integrations: settings checked against the network's models, credentials encrypted and write-only."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select
from sqlalchemy.orm import Session

from services.admin.integration_settings import checked
from services.admin.stores.base import StoreBase
from shared.crypto import decrypt_credentials, encrypt_credentials
from shared.db.models import (
    Integration,
)
from shared.errors import NotFound
from shared.forwarding.model import Integration as IntegrationConfig
from shared.runtime import now_ms


def integration_json(row: Integration) -> dict[str, Any]:
    # Credentials are write-only: only whether they are set is ever shown.
    return {
        "app_id": row.app_id, "network": row.network, "enabled": row.enabled, "settings": row.settings,
        "event_map": row.event_map, "credentials_set": row.credentials_encrypted is not None,
        "updated_at_ms": row.updated_at_ms,
    }


class IntegrationsStore(StoreBase):
    def put_integration(self, app_id: str, network: str, body: dict[str, Any]) -> dict[str, Any]:
        """Settings and credentials are checked against the network's models (IntegrationInvalid naming the
        field): the settings the integration will hold, and the credentials given, or, when none are given
        nor stored, whether the network can do without."""
        with self._sessions.begin() as session:
            self._require_app(session, app_id)
            version = self._next_version(session, app_id)
            row = session.get(Integration, (app_id, network))
            stored_settings = row.settings if row is not None else {}
            settings = checked(network, "settings", body.get("settings", stored_settings))
            credentials = body.get("credentials")
            if credentials is not None:
                credentials = checked(network, "credentials", credentials)
            elif row is None or row.credentials_encrypted is None:
                checked(network, "credentials", {})
            if row is None:
                row = Integration(app_id=app_id, network=network, enabled=True, settings={}, event_map={})
                session.add(row)
            if "enabled" in body:
                row.enabled = bool(body["enabled"])
            row.settings = settings
            if "event_map" in body:
                row.event_map = dict(body["event_map"])
            if credentials is not None:
                if self._secret_key is None:
                    raise RuntimeError("APPREFER_SECRET_KEY is not set: credentials cannot be stored")
                row.credentials_encrypted = encrypt_credentials(self._secret_key, credentials)
            row.updated_at_ms = version
            session.flush()
            return integration_json(row)

    def patch_integration(self, app_id: str, network: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Only `enabled` and `event_map` (the route refuses anything else): nothing the network's models check.
        NotFound when the app has no such integration."""
        with self._sessions.begin() as session:
            row = session.get(Integration, (app_id, network), with_for_update=True)
            if row is None:
                raise NotFound(f"no {network} integration for app {app_id}")
            version = self._next_version(session, app_id)
            if "enabled" in changes:
                row.enabled = bool(changes["enabled"])
            if "event_map" in changes:
                row.event_map = dict(changes["event_map"])
            row.updated_at_ms = version
            session.flush()
            return integration_json(row)

    def delete_integration(self, app_id: str, network: str) -> None:
        """NotFound when the app has no such integration. The newest integration left is stamped with a later
        updated_at_ms: forwarders' caches (shared/forwarding/integrations.py) are checked against the app's
        max(updated_at_ms), which the delete of an older one alone would leave as it was."""
        with self._sessions.begin() as session:
            version = self._next_version(session, app_id)
            deleted = session.execute(
                delete(Integration).where(Integration.app_id == app_id, Integration.network == network))
            if not cast(CursorResult[Any], deleted).rowcount:
                raise NotFound(f"no {network} integration for app {app_id}")
            newest = session.scalars(select(Integration).where(Integration.app_id == app_id)
                                     .order_by(Integration.updated_at_ms.desc()).limit(1)).first()
            if newest is not None:
                newest.updated_at_ms = version

    @staticmethod
    def _next_version(session: Session, app_id: str) -> int:
        """An updated_at_ms above every one of the app's integrations, so the app's max(updated_at_ms), which
        forwarders' caches are checked against, changes with every write (even two in one millisecond)."""
        newest = session.scalar(select(func.max(Integration.updated_at_ms)).where(Integration.app_id == app_id))
        return max(now_ms(), (newest or 0) + 1)

    def get_integration(self, app_id: str, network: str) -> dict[str, Any]:
        with self._sessions() as session:
            row = session.get(Integration, (app_id, network))
            if row is None:
                raise NotFound(f"no {network} integration for app {app_id}")
            return integration_json(row)

    def list_integrations(self, app_id: str) -> list[dict[str, Any]]:
        with self._sessions() as session:
            self._require_app(session, app_id)
            rows = session.scalars(select(Integration).where(Integration.app_id == app_id))
            return [integration_json(r) for r in rows]

    def integration_config(self, app_id: str, network: str) -> IntegrationConfig:
        """Decrypted, in memory only: for Test Connection."""
        with self._sessions() as session:
            row = session.get(Integration, (app_id, network))
            if row is None:
                raise NotFound(f"no {network} integration for app {app_id}")
            credentials = {}
            if row.credentials_encrypted and self._secret_key:
                credentials = decrypt_credentials(self._secret_key, row.credentials_encrypted)
            return IntegrationConfig(app_id=app_id, network=network, settings=dict(row.settings or {}),
                                     credentials=credentials, event_map=dict(row.event_map or {}),
                                     enabled=row.enabled)

