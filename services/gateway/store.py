"""What the gateway and the admin API read and write in the database (sync; called in threads)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from services.gateway.integration_settings import checked
from services.privacy.erasure import Identifiers, UnknownApp, erase
from services.skan import decode
from services.skan.postback_input import enrichment
from shared.crypto import decrypt_credentials, encrypt_credentials, hash_api_key, new_api_key, new_id
from shared.db.models import (
    ApiKey,
    App,
    AuditEntry,
    Install,
    Integration,
    SkanConversionSchema,
    SkanPostback,
    TrackingLink,
)
from shared.forwarding.model import Integration as IntegrationConfig


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class KeyOwner:
    app_id: str
    sandbox: bool
    max_revenue_amount: float  # the app's bound on revenue.amount


@dataclass(frozen=True, slots=True)
class LinkTarget:
    app_id: str
    network: str | None
    campaign: str | None
    store_url: str | None


class NotFound(LookupError):
    pass


def app_json(app: App) -> dict[str, Any]:
    return {
        "app_id": app.app_id, "name": app.name, "platform": app.platform, "store_url": app.store_url,
        "bundle_id": app.bundle_id, "apple_app_id": app.apple_app_id,
        "lookback_days": app.lookback_days, "fingerprint_window_hours": app.fingerprint_window_hours,
        "reattribution_days": app.reattribution_days, "max_revenue_amount": app.max_revenue_amount,
        "test_app": app.test_app,
    }


def integration_json(row: Integration) -> dict[str, Any]:
    # Credentials are write-only: only whether they are set is ever shown.
    return {
        "app_id": row.app_id, "network": row.network, "enabled": row.enabled, "settings": row.settings,
        "event_map": row.event_map, "credentials_set": row.credentials_encrypted is not None,
        "updated_at_ms": row.updated_at_ms,
    }


class GatewayStore:
    def __init__(self, sessions: sessionmaker[Session], secret_key: str | None) -> None:
        self._sessions = sessions
        self._secret_key = secret_key

    # --- read by the ingest path -------------------------------------------------------------

    def key_owner(self, key: str) -> KeyOwner | None:
        with self._sessions() as session:
            row = session.execute(
                select(ApiKey.app_id, ApiKey.mode, App.max_revenue_amount)
                .join(App, App.app_id == ApiKey.app_id)
                .where(ApiKey.key_hash == hash_api_key(key), ApiKey.revoked_at_ms.is_(None))
            ).first()
            return KeyOwner(row.app_id, row.mode == "test", row.max_revenue_amount) if row else None

    def link_target(self, link_id: str) -> LinkTarget | None:
        with self._sessions() as session:
            row = session.execute(
                select(TrackingLink, App.store_url)
                .join(App, App.app_id == TrackingLink.app_id)
                .where(TrackingLink.link_id == link_id)
            ).first()
            if row is None:
                return None
            link, app_store_url = row
            return LinkTarget(link.app_id, link.network, link.campaign, link.store_url or app_store_url)

    def knows_apple_app_id(self, apple_app_id: str) -> bool:
        """Whether an app has this App Store id: SKAN postbacks for any other are only counted, and rate-limited."""
        with self._sessions() as session:
            return session.scalar(select(App.app_id).where(App.apple_app_id == apple_app_id).limit(1)) is not None

    def ping(self) -> None:
        with self._sessions() as session:
            session.execute(select(1))

    # --- admin -------------------------------------------------------------------------------

    def create_app(self, fields: dict[str, Any]) -> dict[str, Any]:
        with self._sessions.begin() as session:
            app = App(app_id=new_id("app"), created_at_ms=now_ms(), **fields)
            session.add(app)
            session.flush()
            return app_json(app)

    def list_apps(self) -> list[dict[str, Any]]:
        with self._sessions() as session:
            return [app_json(a) for a in session.scalars(select(App).order_by(App.created_at_ms))]

    def get_app(self, app_id: str) -> dict[str, Any]:
        with self._sessions() as session:
            app = session.get(App, app_id)
            if app is None:
                raise NotFound(f"app {app_id} not found")
            return app_json(app)

    def create_key(self, app_id: str, mode: str) -> dict[str, Any]:
        key = new_api_key(mode)
        with self._sessions.begin() as session:
            self._require_app(session, app_id)
            session.add(ApiKey(app_id=app_id, mode=mode, key_hash=hash_api_key(key), key_prefix=key[:12],
                               created_at_ms=now_ms()))
        return {"app_id": app_id, "mode": mode, "key": key}

    def create_link(self, app_id: str, fields: dict[str, Any], public_base_url: str) -> dict[str, Any]:
        with self._sessions.begin() as session:
            self._require_app(session, app_id)
            link = TrackingLink(link_id=new_id("lnk"), app_id=app_id, created_at_ms=now_ms(), **fields)
            session.add(link)
        return {"link_id": link.link_id, "url": f"{public_base_url}/c/{link.link_id}", "app_id": app_id,
                "network": link.network, "campaign": link.campaign, "store_url": link.store_url}

    def put_integration(self, app_id: str, network: str, body: dict[str, Any]) -> dict[str, Any]:
        """Settings and credentials are checked against the network's models (IntegrationInvalid naming the
        field): the settings the integration will hold, and the credentials given, or, when none are given
        nor stored, whether the network can do without."""
        with self._sessions.begin() as session:
            self._require_app(session, app_id)
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
            row.updated_at_ms = now_ms()
            session.flush()
            return integration_json(row)

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

    def put_skan_schema(self, app_id: str, body: dict[str, Any]) -> dict[str, Any]:
        schema = decode.parse_schema(body)  # InputError naming the field -> 400
        with self._sessions.begin() as session:
            self._require_app(session, app_id)
            row = session.get(SkanConversionSchema, (app_id, schema.schema_id))
            if row is None:
                row = SkanConversionSchema(app_id=app_id, schema_id=schema.schema_id)
                session.add(row)
            row.valid_from_ms = int(schema.valid_from.timestamp() * 1000)
            row.body = body
            row.updated_at_ms = now_ms()
        return {"app_id": app_id, "schema_id": schema.schema_id, "mode": schema.mode,
                "signature_policy": schema.signature_policy, "valid_from": schema.valid_from.isoformat()}

    def skan_postbacks(self, transaction_id: str) -> dict[str, Any]:
        with self._sessions() as session:
            rows = list(session.scalars(
                select(SkanPostback).where(SkanPostback.transaction_id == transaction_id)
                .order_by(SkanPostback.sequence_index)
            ))
        if not rows:
            raise NotFound(f"no postback with transaction-id {transaction_id}")
        shown = [{
            "transaction_id": r.transaction_id, "postback_sequence_index": r.sequence_index, "app_id": r.app_id,
            "ad_network_id": r.ad_network_id, "version": r.version, "signature": r.signature, "reason": r.reason,
            "did_win": r.did_win, "counted_as_install": r.counted_as_install, "conversion_value": r.conversion_value,
            "coarse_conversion_value": r.coarse_conversion_value, "value_source": r.value_source,
            "sources": r.sources.split(","), "duplicates": r.duplicates, "postback": r.postback,
            "enrichment": enrichment(r.postback), "raw_body": r.raw_body, "schema_id": r.schema_id,
            "records": r.records, "received_at_ms": r.received_at_ms,
        } for r in rows]
        return {**shown[0], "postbacks": shown}

    def webhook_authorization(self, app_id: str) -> str | None:
        """The Authorization value the app configured in RevenueCat, or None when not set up."""
        try:
            integration = self.integration_config(app_id, "revenuecat")
        except NotFound:
            return None
        value = integration.credentials.get("authorization")
        return str(value) if integration.enabled and value else None

    def audit_records(self, filters: dict[str, str], limit: int) -> list[dict[str, Any]]:
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        for name in ("app_id", "event_id", "network", "status"):
            if filters.get(name):
                query = query.where(getattr(AuditEntry, name) == filters[name])
        with self._sessions() as session:
            return [
                {"app_id": r.app_id, "event_id": r.event_id, "event_name": r.event_name, "network": r.network,
                 "status": r.status, "attempts": r.attempts,
                 "last_error": r.detail if r.status != "delivered" else None,
                 "detail": r.detail, "http_status": r.http_status, "error_code": r.error_code,
                 "latency_ms": r.latency_ms, "request_hash": r.request_hash, "recorded_at_ms": r.recorded_at_ms}
                for r in session.scalars(query)
            ]

    def erase(self, app_id: str, identifiers: Identifiers, dry_run: bool) -> dict[str, Any]:
        """POST /admin/v1/apps/{app_id}/erasure: services/privacy/erasure.py does the work and records it."""
        try:
            result = erase(self._sessions, app_id, identifiers, source="api", dry_run=dry_run)
        except UnknownApp as exc:
            raise NotFound(str(exc)) from None
        return result.as_json()

    @staticmethod
    def _require_app(session: Session, app_id: str) -> None:
        if session.get(App, app_id) is None:
            raise NotFound(f"app {app_id} not found")
