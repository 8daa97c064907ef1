"""What the ingest gateway reads in the database (sync; called in threads): keys, links, app ids, the RevenueCat
webhook's credential."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from shared.crypto import decrypt_credentials, hash_api_key
from shared.db.models import ApiKey, App, Integration, TrackingLink
from shared.runtime import now_ms


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


class GatewayStore:
    def __init__(self, sessions: sessionmaker[Session], secret_key: str | None) -> None:
        self._sessions = sessions
        self._secret_key = secret_key

    # --- read by the ingest path -------------------------------------------------------------

    def key_owner(self, key: str) -> KeyOwner | None:
        """The app a key is of, None for a key unknown, revoked, past its expiry (a rotated key's grace) or of a
        deleted app. The gateway caches the answer (APPREFER_API_KEY_CACHE_SECONDS): a key refused here may
        still be accepted for that long after."""
        with self._sessions() as session:
            row = session.execute(
                select(ApiKey.app_id, ApiKey.mode, App.max_revenue_amount)
                .join(App, App.app_id == ApiKey.app_id)
                .where(ApiKey.key_hash == hash_api_key(key), ApiKey.revoked_at_ms.is_(None),
                       or_(ApiKey.expires_at_ms.is_(None), ApiKey.expires_at_ms > now_ms()),
                       App.deleted_at_ms.is_(None))
            ).first()
            return KeyOwner(row.app_id, row.mode == "test", row.max_revenue_amount) if row else None

    def link_target(self, link_id: str) -> LinkTarget | None:
        """The link, None for one unknown, deleted, or of a deleted app (cached as key_owner's answers are)."""
        with self._sessions() as session:
            row = session.execute(
                select(TrackingLink, App.store_url)
                .join(App, App.app_id == TrackingLink.app_id)
                .where(TrackingLink.link_id == link_id, TrackingLink.deleted_at_ms.is_(None),
                       App.deleted_at_ms.is_(None))
            ).first()
            if row is None:
                return None
            link, app_store_url = row
            return LinkTarget(link.app_id, link.network, link.campaign, link.store_url or app_store_url)

    def knows_apple_app_id(self, apple_app_id: str) -> bool:
        """Whether an app has this App Store id: SKAN postbacks for any other are only counted, and rate-limited."""
        with self._sessions() as session:
            return session.scalar(select(App.app_id).where(App.apple_app_id == apple_app_id,
                                                           App.deleted_at_ms.is_(None)).limit(1)) is not None

    def ping(self) -> None:
        with self._sessions() as session:
            session.execute(select(1))

    def webhook_authorization(self, app_id: str) -> str | None:
        """The Authorization value the app configured in RevenueCat, or None when not set up."""
        with self._sessions() as session:
            row = session.get(Integration, (app_id, "revenuecat"))
        if row is None or not row.enabled or row.credentials_encrypted is None or not self._secret_key:
            return None
        value = decrypt_credentials(self._secret_key, row.credentials_encrypted).get("authorization")
        return str(value) if value else None
