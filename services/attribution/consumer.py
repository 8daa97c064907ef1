"""Attribution: clicks.raw + events.raw -> events.attributed, with clicks and installs in the DB.

Clicks are stored (idempotently). An install is matched to a stored click by the rules in
`matching`; every later event of the device carries the install's attribution downstream.
Reprocessing a batch after a crash re-emits the same attribution: the install row remembers which
event set it.

Test (pk_test_) and live traffic keep separate state, keyed by mode: installs, attributions,
identities and the re-attribution history. A test install may match any click (links have no mode,
so QA can click a real link), and that match stays in test state; a live install matches only live
clicks, and never sees a test install of the same device.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from services.catalog import consumer_topics
from services.domain import matching
from services.domain.matching import Attribution, AttributionRules, PreviousInstall
from shared.avro import AvroCodec
from shared.db.models import App, Click, DeviceIdentity, Install
from shared.db.upsert import insert_ignoring_duplicates, upsert
from shared.kafka.records import InRecord, OutRecord
from shared.kafka.topics import EVENTS_ATTRIBUTED
from shared.reports.stale import mark_stale

SERVICE = "attribution"
TOPICS = consumer_topics(SERVICE)
INSTALL = "install"
REVENUECAT = "revenuecat"
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


def is_sdk_install(event: dict[str, Any]) -> bool:
    return bool(event["event_name"] == INSTALL and event["source"] == "sdk")


def install_time_ms(event: dict[str, Any]) -> int:
    # Device clocks run fast and SDKs send late: never place an install after we received it.
    return min(int(event["event_time_ms"]), int(event["received_at_ms"]))


def _report_days(install: Install | None) -> tuple[int, ...]:
    """The times an install row is counted at in the report: its install, and its latest reinstall."""
    if install is None:
        return ()
    return (install.installed_at_ms, *((install.last_install_at_ms,) if install.last_install_at_ms else ()))


def install_signals(event: dict[str, Any], installed_at_ms: int) -> matching.InstallSignals:
    device = event["device"]
    return matching.install_signals(
        event["referrer"], idfa=device.get("idfa"), gaid=device.get("gaid"),
        fingerprint=matching.device_fingerprint(device.get("ip"), device.get("user_agent")),
        installed_at=to_datetime(installed_at_ms),
    )


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


class WrittenIdentities:
    """The identity -> device rows this process wrote lately. A device repeats its ids in every event;
    rewriting an unchanged row only moves seen_at_ms, so that is done at most every REFRESH_MS."""

    REFRESH_MS = 10 * 60 * 1000
    MAX_ENTRIES = 200_000

    def __init__(self) -> None:
        self._written: dict[tuple[str, str, str, bool], tuple[str, int]] = {}

    def changed(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows worth writing, remembered as written: call `forget` when their transaction fails."""
        if len(self._written) + len(rows) > self.MAX_ENTRIES:
            self._written.clear()
        fresh = []
        for row in rows:
            key = (row["app_id"], row["kind"], row["value"], row["sandbox"])
            last = self._written.get(key)
            if last is None or last[0] != row["device_id"] or row["seen_at_ms"] - last[1] >= self.REFRESH_MS:
                fresh.append(row)
                self._written[key] = (row["device_id"], row["seen_at_ms"])
        return fresh

    def forget(self) -> None:
        self._written.clear()


class AttributionHandler:
    SCHEMAS = frozenset({"apprefer.Click", "apprefer.RawEvent"})  # the loop dead-letters any other

    def __init__(self, sessions: sessionmaker[Session], codec: AvroCodec) -> None:
        self._sessions = sessions
        self._codec = codec
        self._rules: dict[str, tuple[float, AttributionRules, str | None]] = {}  # app -> (expiry, rules, platform)
        self._installs: dict[tuple[str, str, bool], Install | None] = {}  # (app, device, sandbox)
        self._identities: dict[tuple[str, str, str, bool], dict[str, Any]] = {}
        self._clicks: dict[tuple[str, bool], matching.ClickIndex] = {}  # (app, for a test install)
        self._signals: dict[tuple[str, str], matching.InstallSignals] = {}  # this batch's installs
        self._written_identities = WrittenIdentities()

    def __call__(self, records: list[InRecord]) -> list[OutRecord]:
        try:
            with self._sessions.begin() as session:
                return self._process(session, records)
        except Exception:
            self._written_identities.forget()  # the transaction rolled back: nothing it wrote counts
            raise

    def _process(self, session: Session, records: list[InRecord]) -> list[OutRecord]:
        outputs: list[OutRecord] = []
        # Clicks first: a click and the install it caused can arrive in one batch.
        clicks = [r for r in records if r.schema == "apprefer.Click"]
        insert_ignoring_duplicates(session, Click, [click_row(c.value) for c in clicks])
        events = [r for r in records if r.schema == "apprefer.RawEvent"]
        # One query for every device of the batch instead of one per event.
        self._installs = self._load_installs(session, {
            (r.value["app_id"], r.value["device"]["device_id"], r.value["sandbox"]) for r in events})
        # And one query for the clicks every install of the batch may match.
        self._signals = {}
        self._clicks = self._load_clicks(session, [r.value for r in events if is_sdk_install(r.value)])
        self._identities = {}
        self._changed_days: list[tuple[str, int]] = []
        for record in records:
            if record.schema == "apprefer.Click":
                continue
            outputs.append(self._attribute(session, record))
        upsert(session, DeviceIdentity, self._written_identities.changed(list(self._identities.values())),
               ("app_id", "kind", "value", "sandbox"), ("device_id", "seen_at_ms"))
        mark_stale(session, "installs", self._changed_days)  # a late install changes a day the report rolled up
        return outputs

    @staticmethod
    def _load_installs(session: Session, keys: set[tuple[str, str, bool]]
                       ) -> dict[tuple[str, str, bool], Install | None]:
        found: dict[tuple[str, str, bool], Install | None] = dict.fromkeys(keys)
        device_ids_by_app: dict[tuple[str, bool], list[str]] = {}
        for app_id, device_id, sandbox in sorted(keys):
            device_ids_by_app.setdefault((app_id, sandbox), []).append(device_id)
        # Per app and mode, `device_id IN (...)`: the primary key's own shape (a row-value IN can scan the table).
        for (app_id, sandbox), device_ids in device_ids_by_app.items():
            for start in range(0, len(device_ids), 500):
                chunk = device_ids[start:start + 500]
                for row in session.scalars(select(Install).where(
                        Install.app_id == app_id, Install.device_id.in_(chunk), Install.sandbox.is_(sandbox))):
                    found[(row.app_id, row.device_id, row.sandbox)] = row
        return found

    def _attribute(self, session: Session, record: InRecord) -> OutRecord:
        event = record.value
        app_id, device, sandbox = event["app_id"], event["device"], bool(event["sandbox"])
        install = self._installs.get((app_id, device["device_id"], sandbox))
        reinstall = False
        if install is None and event["source"] == REVENUECAT:
            install = self._resolve_device(session, event)
            if install is not None:
                event = {**event, "device": {**device, "device_id": install.device_id}}
        if is_sdk_install(event):
            before = _report_days(install)
            install, reinstall = self._record_install(session, event, install)
            self._installs[(app_id, device["device_id"], sandbox)] = install
            if not sandbox:  # the report counts live installs only: the days this one left and joined
                self._changed_days.extend((app_id, at) for at in {*before, *_report_days(install)})
        if event["source"] == "sdk":
            self._remember_identities(event)
        attribution = install_row_attribution(install) if install else matching.ORGANIC
        event = self._with_platform(session, event)
        attributed_event = {
            "event": event,
            "attribution": attribution_record(attribution, install, reinstall),
            "attributed_at_ms": int(time.time() * 1000),
        }
        return OutRecord(topic=EVENTS_ATTRIBUTED, key=record.key, headers=record.headers,
                         value=self._codec.encode("apprefer.AttributedEvent", attributed_event), origin=record)

    def _remember_identities(self, event: dict[str, Any]) -> None:
        """Advertising ids and the hashed external user id -> device, for events from elsewhere; and the
        hashed email and phone, so that an erasure request naming only those finds the device."""
        device, hashes = event["device"], event["user_hashes"]
        identities = {
            "idfa": matching.usable_ad_id(device.get("idfa")),
            "gaid": matching.usable_ad_id(device.get("gaid")),
            "external_id": hashes.get("external_id"),
            "email": hashes.get("em"),
            "phone": hashes.get("ph"),
        }
        for kind, value in identities.items():
            if value:  # the batch's last word per identity; written in one upsert at the end
                sandbox = bool(event["sandbox"])
                self._identities[(event["app_id"], kind, value, sandbox)] = {
                    "app_id": event["app_id"], "kind": kind, "value": value, "sandbox": sandbox,
                    "device_id": device["device_id"], "seen_at_ms": event["received_at_ms"]}

    def _resolve_device(self, session: Session, event: dict[str, Any]) -> Install | None:
        """A RevenueCat event names the device indirectly: the SDK's device id or IDFV as a
        subscriber attribute, app user ids, advertising ids, or the app user id as external id."""
        app_id, sandbox = event["app_id"], bool(event["sandbox"])
        hints = (orjson.loads(event["properties_json"] or "{}").get("rc_identities") or {})
        direct = [hints.get("apprefer_device_id"), hints.get("idfv"), hints.get("app_user_id"),
                  hints.get("original_app_user_id"), *(hints.get("aliases") or [])]
        for device_id in direct:
            if isinstance(device_id, str) and device_id:
                install = session.get(Install, (app_id, device_id, sandbox))
                if install is not None:
                    return install
        device = event["device"]
        indirect = [("idfa", matching.usable_ad_id(device.get("idfa"))),
                    ("gaid", matching.usable_ad_id(device.get("gaid"))),
                    ("external_id", event["user_hashes"].get("external_id"))]
        for kind, value in indirect:
            if value:
                identity = session.get(DeviceIdentity, (app_id, kind, value, sandbox))
                if identity is not None:
                    found = session.get(Install, (app_id, identity.device_id, sandbox))
                    if found is not None:
                        return found
        return None

    def _record_install(self, session: Session, event: dict[str, Any], previous: Install | None
                        ) -> tuple[Install, bool]:
        app_id, device = event["app_id"], event["device"]
        installed_at_ms = install_time_ms(event)
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
        signals = self._signals[(app_id, event["event_id"])]
        candidates = self._clicks.get((app_id, bool(event["sandbox"])), matching.ClickIndex()).candidates(
            matching.click_search_keys(signals, rules))
        attribution = matching.match_install(signals, candidates, rules)
        install = previous or Install(app_id=app_id, device_id=device["device_id"], sandbox=bool(event["sandbox"]))
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
        if previous is None:
            session.add(install)
        return install, False

    def _load_clicks(self, session: Session, installs: list[dict[str, Any]]
                     ) -> dict[tuple[str, bool], matching.ClickIndex]:
        """Per app, the stored clicks any of these installs could match (a superset: the index and
        `match_install` narrow it per install): for live installs the live clicks, for test installs
        every click."""
        searches: dict[str, list[matching.ClickSearch]] = {}
        for event in installs:
            rules = self._app_rules(session, event["app_id"])
            signals = install_signals(event, install_time_ms(event))
            self._signals[(event["app_id"], event["event_id"])] = signals  # matched with them below
            searches.setdefault(event["app_id"], []).append(matching.click_search_keys(signals, rules))
        indexes = {}
        for app_id, app_searches in searches.items():
            search = matching.batch_click_search(app_searches)
            if search is not None:
                clicks = self._query_clicks(session, app_id, search)
                indexes[(app_id, False)] = matching.ClickIndex([click for click, sandbox in clicks if not sandbox])
                indexes[(app_id, True)] = matching.ClickIndex([click for click, _ in clicks])
        return indexes

    @staticmethod
    def _query_clicks(session: Session, app_id: str, search: matching.BatchClickSearch
                      ) -> list[tuple[matching.Click, bool]]:
        """The matching clicks, each with whether it came in with a test key."""
        conditions = []
        for column, values in ((Click.click_key, search.click_keys), (Click.click_id, search.click_ids),
                               (Click.idfa, search.idfas), (Click.gaid, search.gaids),
                               (Click.fingerprint, search.fingerprints)):
            if values:
                conditions.append(column.in_(sorted(values)))
        rows = session.execute(
            select(Click.click_key, Click.network, Click.campaign, Click.click_id_type, Click.click_id, Click.idfa,
                   Click.gaid, Click.fingerprint, Click.clicked_at_ms, Click.sandbox)
            .where(Click.app_id == app_id, or_(*conditions),
                   Click.clicked_at_ms.between(to_ms(search.earliest), to_ms(search.latest)))
        )
        return [
            (matching.Click(
                click_key=row.click_key, network=row.network, campaign=row.campaign,
                click_id_type=row.click_id_type, click_id=row.click_id, idfa=row.idfa, gaid=row.gaid,
                fingerprint=row.fingerprint, clicked_at=to_datetime(row.clicked_at_ms),
            ), bool(row.sandbox))
            for row in rows
        ]

    def _with_platform(self, session: Session, event: dict[str, Any]) -> dict[str, Any]:
        """An event with no device.os and no advertising id (server-side senders often omit them) gets
        the app's registered platform: every network needs one (Meta's extinfo, TikTok's app platform)."""
        device = event["device"]
        if device.get("os") or device.get("idfa") or device.get("gaid"):
            return event
        platform = self._app(session, event["app_id"])[1]
        if platform not in ("ios", "android"):
            return event
        return {**event, "device": {**device, "os": platform}}

    def _app_rules(self, session: Session, app_id: str) -> AttributionRules:
        return self._app(session, app_id)[0]

    def _app(self, session: Session, app_id: str) -> tuple[AttributionRules, str | None]:
        """The app's attribution windows and platform, cached for APP_RULES_TTL_SECONDS."""
        cached = self._rules.get(app_id)
        if cached and cached[0] > time.monotonic():
            return cached[1], cached[2]
        app = session.get(App, app_id)
        rules = matching.DEFAULT_RULES if app is None else AttributionRules(
            lookback=timedelta(days=app.lookback_days),
            fingerprint_window=timedelta(hours=app.fingerprint_window_hours),
            reattribution_window=timedelta(days=app.reattribution_days),
        )
        platform = app.platform if app is not None else None
        self._rules[app_id] = (time.monotonic() + APP_RULES_TTL_SECONDS, rules, platform)
        return rules, platform
