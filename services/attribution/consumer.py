"""Attribution: clicks.raw + events.raw -> events.attributed, with clicks and installs in the DB.

Clicks are stored (idempotently). An install is matched to a stored click by the rules in
`matching`; every later event of the device carries the install's attribution downstream.
Reprocessing a batch after a crash re-emits the same attribution: the install row remembers which
event set it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import and_, or_, select, tuple_
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from services.attribution import matching
from services.attribution.matching import Attribution, AttributionRules, PreviousInstall
from shared.avro import AvroCodec
from shared.db.models import App, Click, DeviceIdentity, Install
from shared.db.upsert import insert_ignoring_duplicates, upsert
from shared.kafka.consumer import TransientError
from shared.kafka.records import InRecord, OutRecord, dead_letter_of
from shared.kafka.topics import CLICKS_RAW, EVENTS_ATTRIBUTED, EVENTS_RAW

SERVICE = "attribution"
TOPICS = (CLICKS_RAW, EVENTS_RAW)
INSTALL = "install"
REVENUECAT = "revenuecat"
MAX_CANDIDATES = 500
APP_RULES_TTL_SECONDS = 30.0


def to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def to_ms(moment: datetime | None) -> int | None:
    return int(moment.timestamp() * 1000) if moment else None


def click_row(click: dict[str, Any]) -> dict[str, Any]:
    return {name: click[name] for name in (
        "app_id", "click_key", "link_id", "network", "campaign", "click_id_type", "click_id", "idfa", "gaid",
        "fingerprint", "clicked_at_ms", "sandbox",
    )}


def install_row_attribution(row: Install) -> Attribution:
    if not row.attributed:
        return matching.ORGANIC
    return Attribution(
        attributed=True, matched_by=row.matched_by, network=row.network, campaign=row.campaign,
        click_id_type=row.click_id_type, click_id=row.click_id, click_key=row.click_key,
        click_time=to_datetime(row.click_time_ms) if row.click_time_ms is not None else None,
    )


def attribution_record(attribution: Attribution, install: Install | None, reinstall: bool) -> dict[str, Any]:
    return {
        "attributed": attribution.attributed,
        "matched_by": attribution.matched_by,
        "network": attribution.network,
        "campaign": attribution.campaign,
        "click_id_type": attribution.click_id_type,
        "click_id": attribution.click_id,
        "click_key": attribution.click_key,
        "click_time_ms": to_ms(attribution.click_time),
        "install_time_ms": install.installed_at_ms if install else None,
        "reinstall": reinstall,
    }


class AttributionHandler:
    def __init__(self, sessions: sessionmaker[Session], codec: AvroCodec) -> None:
        self._sessions = sessions
        self._codec = codec
        self._rules: dict[str, tuple[float, AttributionRules]] = {}
        self._installs: dict[tuple[str, str], Install | None] = {}
        self._identities: dict[tuple[str, str, str], dict[str, Any]] = {}

    def __call__(self, records: list[InRecord]) -> list[OutRecord]:
        try:
            with self._sessions.begin() as session:
                return self._process(session, records)
        except OperationalError as exc:
            raise TransientError(str(exc)) from exc

    def _process(self, session: Session, records: list[InRecord]) -> list[OutRecord]:
        outputs: list[OutRecord] = []
        # Clicks first: a click and the install it caused can arrive in one batch.
        clicks = [r for r in records if r.schema == "apprefer.Click"]
        insert_ignoring_duplicates(session, Click, [click_row(c.value) for c in clicks])
        events = [r for r in records if r.schema == "apprefer.RawEvent"]
        # One query for every device of the batch instead of one per event.
        self._installs = self._load_installs(session, {(r.value["app_id"], r.value["device"]["device_id"])
                                                       for r in events})
        self._identities = {}
        for record in records:
            if record.schema == "apprefer.Click":
                continue
            if record.schema != "apprefer.RawEvent":
                outputs.append(dead_letter_of(record, f"unexpected schema {record.schema}", SERVICE))
                continue
            outputs.append(self._attribute(session, record))
        upsert(session, DeviceIdentity, list(self._identities.values()), ("app_id", "kind", "value"),
               ("device_id", "seen_at_ms"))
        return outputs

    @staticmethod
    def _load_installs(session: Session, keys: set[tuple[str, str]]) -> dict[tuple[str, str], Install | None]:
        found: dict[tuple[str, str], Install | None] = dict.fromkeys(keys)
        for start in range(0, len(keys), 500):
            chunk = list(keys)[start:start + 500]
            for row in session.scalars(select(Install).where(tuple_(Install.app_id, Install.device_id).in_(chunk))):
                found[(row.app_id, row.device_id)] = row
        return found

    def _attribute(self, session: Session, record: InRecord) -> OutRecord:
        event = record.value
        app_id, device = event["app_id"], event["device"]
        install = self._installs.get((app_id, device["device_id"]))
        reinstall = False
        if install is None and event["source"] == REVENUECAT:
            install = self._resolve_device(session, event)
            if install is not None:
                event = {**event, "device": {**device, "device_id": install.device_id}}
        if event["event_name"] == INSTALL and event["source"] == "sdk":
            install, reinstall = self._record_install(session, event, install)
            self._installs[(app_id, device["device_id"])] = install
        if event["source"] == "sdk":
            self._remember_identities(event)
        attribution = install_row_attribution(install) if install else matching.ORGANIC
        attributed_event = {
            "event": event,
            "attribution": attribution_record(attribution, install, reinstall),
            "attributed_at_ms": int(time.time() * 1000),
        }
        return OutRecord(topic=EVENTS_ATTRIBUTED, key=record.key, headers=record.headers,
                         value=self._codec.encode("apprefer.AttributedEvent", attributed_event))

    def _remember_identities(self, event: dict[str, Any]) -> None:
        """Advertising ids and the hashed external user id -> device, for events from elsewhere."""
        device = event["device"]
        identities = {
            "idfa": matching.usable_ad_id(device.get("idfa")),
            "gaid": matching.usable_ad_id(device.get("gaid")),
            "external_id": event["user_hashes"].get("external_id"),
        }
        for kind, value in identities.items():
            if value:  # the batch's last word per identity; written in one upsert at the end
                self._identities[(event["app_id"], kind, value)] = {
                    "app_id": event["app_id"], "kind": kind, "value": value, "device_id": device["device_id"],
                    "seen_at_ms": event["received_at_ms"]}

    def _resolve_device(self, session: Session, event: dict[str, Any]) -> Install | None:
        """A RevenueCat event names the device indirectly: the SDK's device id or IDFV as a
        subscriber attribute, app user ids, advertising ids, or the app user id as external id."""
        app_id = event["app_id"]
        hints = (orjson.loads(event["properties_json"] or "{}").get("rc_identities") or {})
        direct = [hints.get("apprefer_device_id"), hints.get("idfv"), hints.get("app_user_id"),
                  hints.get("original_app_user_id"), *(hints.get("aliases") or [])]
        for device_id in direct:
            if isinstance(device_id, str) and device_id:
                install = session.get(Install, (app_id, device_id))
                if install is not None:
                    return install
        device = event["device"]
        indirect = [("idfa", matching.usable_ad_id(device.get("idfa"))),
                    ("gaid", matching.usable_ad_id(device.get("gaid"))),
                    ("external_id", event["user_hashes"].get("external_id"))]
        for kind, value in indirect:
            if value:
                identity = session.get(DeviceIdentity, (app_id, kind, value))
                if identity is not None:
                    found = session.get(Install, (app_id, identity.device_id))
                    if found is not None:
                        return found
        return None

    def _record_install(self, session: Session, event: dict[str, Any], previous: Install | None
                        ) -> tuple[Install, bool]:
        app_id, device = event["app_id"], event["device"]
        # Device clocks run fast and SDKs send late: never place an install after we received it.
        installed_at_ms = min(event["event_time_ms"], event["received_at_ms"])
        rules = self._app_rules(session, app_id)
        decision = matching.install_decision(
            PreviousInstall(previous.event_id, to_datetime(previous.installed_at_ms)) if previous else None,
            event["event_id"], to_datetime(installed_at_ms), rules,
        )
        if previous is not None and decision == matching.DECISION_REPLAY:
            return previous, False
        if previous is not None and decision == matching.DECISION_REINSTALL:
            previous.last_install_event_id = event["event_id"]
            previous.last_install_at_ms = installed_at_ms
            return previous, True
        signals = matching.install_signals(
            event["referrer"], idfa=device.get("idfa"), gaid=device.get("gaid"),
            fingerprint=matching.device_fingerprint(device.get("ip"), device.get("user_agent")),
            installed_at=to_datetime(installed_at_ms),
        )
        attribution = matching.match_install(signals, self._candidates(session, app_id, signals, rules), rules)
        install = previous or Install(app_id=app_id, device_id=device["device_id"])
        install.event_id = event["event_id"]
        install.installed_at_ms = installed_at_ms
        install.attributed = attribution.attributed
        install.matched_by = attribution.matched_by
        install.network = attribution.network
        install.campaign = attribution.campaign
        install.click_id_type = attribution.click_id_type
        install.click_id = attribution.click_id
        install.click_key = attribution.click_key
        install.click_time_ms = to_ms(attribution.click_time)
        install.last_install_event_id = event["event_id"]
        install.last_install_at_ms = installed_at_ms
        install.sandbox = event["sandbox"]
        if previous is None:
            session.add(install)
        return install, False

    def _candidates(self, session: Session, app_id: str, signals: matching.InstallSignals,
                    rules: AttributionRules) -> Iterable[matching.Click]:
        search = matching.click_search_keys(signals, rules)
        if not search.has_keys:
            return []
        conditions = []
        if search.click_key:
            conditions.append(Click.click_key == search.click_key)
        for click_id_type, click_id in search.network_click_ids:
            conditions.append(and_(Click.click_id == click_id, Click.click_id_type == click_id_type))
        if search.idfa:
            conditions.append(Click.idfa == search.idfa)
        if search.gaid:
            conditions.append(Click.gaid == search.gaid)
        if search.fingerprint:
            conditions.append(Click.fingerprint == search.fingerprint)
        rows = session.scalars(
            select(Click)
            .where(Click.app_id == app_id, or_(*conditions),
                   Click.clicked_at_ms.between(to_ms(search.earliest), to_ms(search.latest)))
            .order_by(Click.clicked_at_ms.desc())
            .limit(MAX_CANDIDATES)
        )
        return [
            matching.Click(
                click_key=row.click_key, network=row.network, campaign=row.campaign,
                click_id_type=row.click_id_type, click_id=row.click_id, idfa=row.idfa, gaid=row.gaid,
                fingerprint=row.fingerprint, clicked_at=to_datetime(row.clicked_at_ms),
            )
            for row in rows
        ]

    def _app_rules(self, session: Session, app_id: str) -> AttributionRules:
        cached = self._rules.get(app_id)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        app = session.get(App, app_id)
        rules = matching.DEFAULT_RULES if app is None else AttributionRules(
            lookback=timedelta(days=app.lookback_days),
            fingerprint_window=timedelta(hours=app.fingerprint_window_hours),
            reattribution_window=timedelta(days=app.reattribution_days),
        )
        self._rules[app_id] = (time.monotonic() + APP_RULES_TTL_SECONDS, rules)
        return rules
