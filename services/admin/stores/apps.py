"""Apps, their API keys and their tracking links.

A deleted app (apps.deleted_at_ms set) and a deleted link are gone for the admin API: not listed, 404 when named.
Their rows stay (the audit, the reports and erasure still find them); the gateway refuses their keys and links
(services/gateway/store.py). Lists are paged by a position, (created_at_ms, id), returned for the next page:
the API turns it into an opaque cursor.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from services.admin.stores.base import StoreBase
from shared.crypto import hash_api_key, new_api_key, new_id
from shared.db.models import (
    ApiKey,
    App,
    TrackingLink,
)
from shared.errors import NotFound
from shared.runtime import now_ms

HOUR_MS = 3_600_000
Position = tuple[int, str]  # (created_at_ms, app_id or link_id): where a page ends, the next begins after it
_KEY_ID = re.compile(r"key_([1-9][0-9]{0,17})")


class Conflict(Exception):
    """What a request asks cannot be done for what already exists (answered 409, naming `field`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def app_json(app: App) -> dict[str, Any]:
    return {
        "app_id": app.app_id, "name": app.name, "platform": app.platform, "store_url": app.store_url,
        "bundle_id": app.bundle_id, "apple_app_id": app.apple_app_id,
        "lookback_days": app.lookback_days, "fingerprint_window_hours": app.fingerprint_window_hours,
        "reattribution_days": app.reattribution_days, "max_revenue_amount": app.max_revenue_amount,
        "test_app": app.test_app, "created_at_ms": app.created_at_ms,
    }


def key_id_of(key: ApiKey) -> str:
    return f"key_{key.id}"


def key_json(key: ApiKey) -> dict[str, Any]:
    # Never the key nor its hash: the prefix is enough to recognise it.
    return {"key_id": key_id_of(key), "app_id": key.app_id, "mode": key.mode, "prefix": key.key_prefix,
            "created_at_ms": key.created_at_ms, "revoked_at_ms": key.revoked_at_ms,
            "expires_at_ms": key.expires_at_ms}


def link_json(link: TrackingLink, public_base_url: str) -> dict[str, Any]:
    return {"link_id": link.link_id, "url": f"{public_base_url}/c/{link.link_id}", "app_id": link.app_id,
            "network": link.network, "campaign": link.campaign, "store_url": link.store_url,
            "created_at_ms": link.created_at_ms}


def _working(now: int) -> Any:
    """The keys that authenticate now (services/gateway/store.py key_owner's test)."""
    return and_(ApiKey.revoked_at_ms.is_(None), or_(ApiKey.expires_at_ms.is_(None), ApiKey.expires_at_ms > now))


class AppsStore(StoreBase):
    # --- apps ------------------------------------------------------------------------------------

    def create_app(self, fields: dict[str, Any]) -> dict[str, Any]:
        with self._sessions.begin() as session:
            self._check_apple_app_id(session, fields.get("apple_app_id"), None)
            app = App(app_id=new_id("app"), created_at_ms=now_ms(), **fields)
            session.add(app)
            session.flush()
            return app_json(app)

    def list_apps(self, limit: int, after: Position | None = None) -> tuple[list[dict[str, Any]], Position | None]:
        """Up to `limit` apps after `after` in (created_at_ms, app_id) order, deleted ones left out, and the
        position to ask the next page after (None on the last page)."""
        query = select(App).where(App.deleted_at_ms.is_(None))
        if after is not None:
            query = query.where(or_(App.created_at_ms > after[0],
                                    and_(App.created_at_ms == after[0], App.app_id > after[1])))
        query = query.order_by(App.created_at_ms, App.app_id).limit(limit + 1)
        with self._sessions() as session:
            apps = list(session.scalars(query))
        more = len(apps) > limit
        apps = apps[:limit]
        return [app_json(a) for a in apps], (apps[-1].created_at_ms, apps[-1].app_id) if more else None

    def get_app(self, app_id: str) -> dict[str, Any]:
        with self._sessions() as session:
            return app_json(self._live_app(session, app_id))

    def patch_app(self, app_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Only the fields given change (validated by the API: bounds, nulls, the App Store id's form)."""
        with self._sessions.begin() as session:
            app = self._live_app(session, app_id, for_update=True)
            if "apple_app_id" in fields:
                self._check_apple_app_id(session, fields["apple_app_id"], app_id)
            for name, value in fields.items():
                setattr(app, name, value)
            session.flush()
            return app_json(app)

    def delete_app(self, app_id: str) -> dict[str, Any]:
        """A soft delete: the app is gone for the admin API, its keys and links for the gateway; its rows stay."""
        with self._sessions.begin() as session:
            app = self._live_app(session, app_id, for_update=True)
            app.deleted_at_ms = now_ms()
            return {**app_json(app), "deleted_at_ms": app.deleted_at_ms}

    # --- keys ------------------------------------------------------------------------------------

    def list_keys(self, app_id: str) -> list[dict[str, Any]]:
        with self._sessions() as session:
            self._live_app(session, app_id)
            keys = session.scalars(select(ApiKey).where(ApiKey.app_id == app_id).order_by(ApiKey.id))
            return [key_json(k) for k in keys]

    def create_key(self, app_id: str, mode: str) -> dict[str, Any]:
        with self._sessions.begin() as session:
            self._live_app(session, app_id)
            created, key = self._new_key(session, app_id, mode)
            return {**key_json(created), "key": key}

    def revoke_key(self, app_id: str, key_id: str) -> dict[str, Any]:
        """Revoked now; a key already revoked keeps its first revocation time (revoking twice is no error)."""
        with self._sessions.begin() as session:
            self._live_app(session, app_id)
            key = self._key(session, app_id, key_id)
            if key.revoked_at_ms is None:
                key.revoked_at_ms = now_ms()
            return key_json(key)

    def rotate_key(self, app_id: str, mode: str, grace_hours: int) -> dict[str, Any]:
        """A new key of `mode`; the keys of that mode working now keep working for `grace_hours` more (one that
        already expires sooner keeps its expiry). `replaces` is [] when no key of that mode worked, and
        `old_valid_until_ms` then null; else it is when the last of them stops working."""
        with self._sessions.begin() as session:
            self._live_app(session, app_id, for_update=True)  # rotations of one app one at a time
            now = now_ms()
            until = now + grace_hours * HOUR_MS
            old = list(session.scalars(
                select(ApiKey).where(ApiKey.app_id == app_id, ApiKey.mode == mode, _working(now))
                .order_by(ApiKey.id).with_for_update()))
            for key in old:
                key.expires_at_ms = until if key.expires_at_ms is None else min(key.expires_at_ms, until)
            created, secret = self._new_key(session, app_id, mode)
            return {**key_json(created), "key": secret, "replaces": [key_id_of(k) for k in old],
                    "old_valid_until_ms": max((k.expires_at_ms or until for k in old), default=None)}

    # --- links -----------------------------------------------------------------------------------

    def create_link(self, app_id: str, fields: dict[str, Any], public_base_url: str) -> dict[str, Any]:
        with self._sessions.begin() as session:
            self._live_app(session, app_id)
            link = TrackingLink(link_id=new_id("lnk"), app_id=app_id, created_at_ms=now_ms(), **fields)
            session.add(link)
            return link_json(link, public_base_url)

    def list_links(self, app_id: str, public_base_url: str, limit: int, after: Position | None = None
                   ) -> tuple[list[dict[str, Any]], Position | None]:
        """As list_apps: the app's links not deleted, in (created_at_ms, link_id) order."""
        query = select(TrackingLink).where(TrackingLink.app_id == app_id, TrackingLink.deleted_at_ms.is_(None))
        if after is not None:
            query = query.where(or_(TrackingLink.created_at_ms > after[0],
                                    and_(TrackingLink.created_at_ms == after[0], TrackingLink.link_id > after[1])))
        query = query.order_by(TrackingLink.created_at_ms, TrackingLink.link_id).limit(limit + 1)
        with self._sessions() as session:
            self._live_app(session, app_id)
            links = list(session.scalars(query))
        more = len(links) > limit
        links = links[:limit]
        return ([link_json(link, public_base_url) for link in links],
                (links[-1].created_at_ms, links[-1].link_id) if more else None)

    def get_link(self, app_id: str, link_id: str, public_base_url: str) -> dict[str, Any]:
        with self._sessions() as session:
            self._live_app(session, app_id)
            return link_json(self._live_link(session, app_id, link_id), public_base_url)

    def delete_link(self, app_id: str, link_id: str, public_base_url: str) -> dict[str, Any]:
        """A soft delete: its URL answers 404 from then on (after the gateway's cache, as for keys)."""
        with self._sessions.begin() as session:
            self._live_app(session, app_id)
            link = self._live_link(session, app_id, link_id)
            link.deleted_at_ms = now_ms()
            return {**link_json(link, public_base_url), "deleted_at_ms": link.deleted_at_ms}

    # --- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _live_app(session: Session, app_id: str, for_update: bool = False) -> App:
        query = select(App).where(App.app_id == app_id, App.deleted_at_ms.is_(None))
        app = session.scalar(query.with_for_update() if for_update else query)
        if app is None:
            raise NotFound(f"app {app_id} not found")
        return app

    @staticmethod
    def _live_link(session: Session, app_id: str, link_id: str) -> TrackingLink:
        link = session.get(TrackingLink, link_id)
        if link is None or link.app_id != app_id or link.deleted_at_ms is not None:
            raise NotFound(f"link {link_id} not found")
        return link

    @staticmethod
    def _key(session: Session, app_id: str, key_id: str) -> ApiKey:
        match = _KEY_ID.fullmatch(key_id)
        key = session.get(ApiKey, int(match.group(1))) if match else None
        if key is None or key.app_id != app_id:
            raise NotFound(f"key {key_id} not found")
        return key

    @staticmethod
    def _new_key(session: Session, app_id: str, mode: str) -> tuple[ApiKey, str]:
        secret = new_api_key(mode)
        key = ApiKey(app_id=app_id, mode=mode, key_hash=hash_api_key(secret), key_prefix=secret[:12],
                     created_at_ms=now_ms())
        session.add(key)
        session.flush()  # its id
        return key, secret

    @staticmethod
    def _check_apple_app_id(session: Session, apple_app_id: str | None, app_id: str | None) -> None:
        """An App Store id is one app's (SKAN postbacks find their app by it): another app not deleted having it
        is a conflict. Not a unique index: two requests at the same instant could both pass."""
        if apple_app_id is None:
            return
        query = select(App.app_id).where(App.apple_app_id == apple_app_id, App.deleted_at_ms.is_(None))
        if app_id is not None:
            query = query.where(App.app_id != app_id)
        holder = session.scalar(query.limit(1))
        if holder is not None:
            raise Conflict("apple_app_id", f"app {holder} has apple_app_id {apple_app_id}")
