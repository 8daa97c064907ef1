"""A device's attribution, and erasure."""

from __future__ import annotations

from typing import Any

from services.admin.stores.base import StoreBase
from services.privacy.erasure import Identifiers, UnknownApp, erase
from shared.db.models import (
    Install,
)
from shared.errors import NotFound


class PrivacyStore(StoreBase):
    def attribution(self, app_id: str, device_id: str, sandbox: bool = False) -> dict[str, Any]:
        """The device's live attribution, or its test (pk_test_) one: the two are kept apart."""
        with self._sessions() as session:
            self._require_app(session, app_id)
            row = session.get(Install, (app_id, device_id, sandbox))
            if row is None:
                mode, other_mode = ("test", "live") if sandbox else ("live", "test")
                other = session.get(Install, (app_id, device_id, not sandbox))
                hint = "" if other is None else f" (a {other_mode} install exists: ?sandbox={str(not sandbox).lower()})"
                raise NotFound(f"no {mode} install seen for device {device_id}{hint}")
            return {
                "app_id": app_id, "device_id": device_id, "sandbox": sandbox, "attributed": row.attributed,
                "network": row.network, "click_id_type": row.click_id_type, "click_id": row.click_id,
                "campaign": row.campaign, "matched_by": row.matched_by, "install_event_id": row.event_id,
                "installed_at_ms": row.installed_at_ms, "click_time_ms": row.click_time_ms,
            }

    def erase(self, app_id: str, identifiers: Identifiers, dry_run: bool) -> dict[str, Any]:
        """POST /admin/v1/apps/{app_id}/erasure: services/privacy/erasure.py does the work and records it."""
        try:
            result = erase(self._sessions, app_id, identifiers, source="api", dry_run=dry_run)
        except UnknownApp as exc:
            raise NotFound(str(exc)) from None
        return result.as_json()

