"""The app report (GET /admin/v1/apps/{app_id}/report) against a migrated database: a varied, seeded data set is
inserted, the expected figures are counted here in Python from the same rows, and every group_by is compared, in
JSON and CSV, on PostgreSQL and SQLite; then once through `apprefer run admin` for auth, formats and headers."""

from __future__ import annotations

import csv
import io
import json
import random
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Engine, delete, func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from services.admin.api.reports import report_csv
from services.admin.store import AdminStore
from services.admin.stores.reports import GroupBy, ReportRequest
from services.audit.consumer import write_audit_rows
from shared.db.migrate import upgrade
from shared.db.models import App, AuditEntry, Install, ReportInstallDay, ReportRollupState, ReportStaleDay, SkanPostback
from shared.db.session import make_engine, make_sessionmaker
from shared.errors import NotFound
from shared.kafka.topics import create_topics
from shared.reports.roller import RollSettings, roll_due
from shared.reports.stale import mark_stale
from tests.support.pipeline import ADMIN_TOKEN, Edge, http_call, service_env, start_edge
from tests.support.postgres import create_database

DAY = 86_400_000
FROM_MS = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp() * 1000)
TO_MS = FROM_MS + 5 * DAY
APP, OTHER = "app_report", "app_other"
STATUSES = ("delivered", "rejected", "dead_lettered", "sandbox", "skipped", "retrying")
NETWORKS = ("meta", "tiktok", "google_ads", None)
EVENT_NAMES = ("purchase", "subscribe", "install", "level_complete")
GROUP_BYS = ("day", "network", "campaign", "country")
# The contract (the route's docstring): each section's row keys per group_by.
KEYS = {
    "installs": {"day": ("day", "attributed", "network", "campaign"), "network": ("attributed", "network"),
                 "campaign": ("attributed", "network", "campaign"), "country": ("attributed", "network", "campaign")},
    "conversions": {"day": ("day", "event_name"), "network": ("event_name",), "campaign": ("event_name",),
                    "country": ("event_name",)},
    "forwards": {"day": ("day", "network"), "network": ("network",), "campaign": ("network",),
                 "country": ("network",)},
    "skan": {"day": ("day", "ad_network_id", "campaign"), "network": ("ad_network_id",),
             "campaign": ("ad_network_id", "campaign"), "country": ("country", "ad_network_id")},
}
GROUPED = {"installs": ("day", "network", "campaign"), "conversions": ("day",),
           "forwards": ("day", "network"), "skan": GROUP_BYS}


def day(ms: int) -> str:
    return datetime.fromtimestamp(ms // DAY * DAY / 1000, tz=UTC).date().isoformat()


def moment(rng: random.Random) -> int:
    """Mostly inside the range, some before and after it, some exactly on its bounds."""
    pick = rng.random()
    if pick < 0.04:
        return FROM_MS
    if pick < 0.08:
        return TO_MS
    if pick < 0.10:
        return TO_MS - 1
    return rng.randrange(FROM_MS - 2 * DAY, TO_MS + 2 * DAY)


def dataset(seed: int = 16) -> dict[str, list[dict[str, Any]]]:
    rng = random.Random(seed)
    installs = []
    for i in range(400):
        app_id = APP if rng.random() < 0.9 else OTHER
        attributed = rng.random() < 0.6
        network = rng.choice(NETWORKS) if attributed else None
        campaign = rng.choice(("spring", "summer", "=cmd", None)) if attributed else None
        at = moment(rng)
        kind = rng.random()
        if kind < 0.2:  # reinstalled: the latest reinstall's event and time
            last_id, last_at = f"re-{i}", at + rng.randrange(-DAY, 3 * DAY)
        elif kind < 0.25:  # a row written before last_install_* existed
            last_id, last_at = None, None
        else:
            last_id, last_at = f"ev-install-{i}", at
        installs.append({
            "app_id": app_id, "device_id": f"device-{i}", "sandbox": rng.random() < 0.15,
            "event_id": f"ev-install-{i}", "installed_at_ms": at, "attributed": attributed,
            "matched_by": "click_id" if attributed else None, "network": network, "campaign": campaign,
            "last_install_event_id": last_id, "last_install_at_ms": last_at})
    audit = []
    for e in range(300):
        app_id = APP if rng.random() < 0.9 else OTHER
        name = rng.choice(EVENT_NAMES)
        sandbox = rng.random() < 0.1
        first = moment(rng)
        for network in rng.sample(("meta", "tiktok", "google_ads", "skan_postback"), rng.randint(1, 3)):
            at = first
            for _attempt in range(rng.randint(1, 3)):
                status = "sandbox" if sandbox else rng.choice(STATUSES[:3] + STATUSES[4:])
                audit.append({
                    "audit_id": uuid.uuid4().hex, "app_id": app_id, "event_id": f"event-{e}",
                    # a dead letter's replay is audited without the event's name
                    "event_name": None if rng.random() < 0.05 else name, "network": network, "status": status,
                    "attempts": 1, "recorded_at_ms": at})
                at += rng.randrange(0, DAY)
    skan = []
    for t in range(120):
        app_id = APP if rng.random() < 0.9 else OTHER
        counted = rng.random() < 0.8
        postback: dict[str, Any] = {"ad-network-id": rng.choice(("net1.skadnetwork", "net2.skadnetwork"))}
        which = rng.random()
        if which < 0.4:
            postback["source-identifier"] = rng.choice(("0042", "1234"))
        elif which < 0.8:
            postback["campaign-id"] = rng.choice((7, 19))
        if rng.random() < 0.5:
            postback["ad-network-country-code"] = rng.choice(("US", "DE"))
        records: list[dict[str, Any]] = []
        if counted:
            records.append({"kind": rng.choice(("install", "install", "redownload")), "event_name": None,
                            "count": 1, "revenue": None, "currency": None})
            for _ in range(rng.randint(0, 2)):
                revenue = rng.choice((None, 0.99, 4.5, 12.25))
                records.append({"kind": "event", "event_name": "purchase", "count": rng.randint(1, 3),
                                "revenue": revenue, "currency": rng.choice(("USD", "EUR")) if revenue else None})
        skan.append({
            "transaction_id": f"tx-{t}", "sequence_index": 0, "app_id": app_id, "apple_app_id": "1",
            "ad_network_id": postback["ad-network-id"], "signature": "valid", "did_win": True,
            "counted_as_install": counted, "value_source": "network", "sources": "network", "postback": postback,
            "raw_body": "", "records": records, "duplicates": 0, "received_at_ms": moment(rng)})
    return {"installs": installs, "audit": audit, "skan": skan}


def load(sessions: sessionmaker[Session], data: dict[str, list[dict[str, Any]]]) -> None:
    with sessions.begin() as session:
        for app_id in (APP, OTHER):
            session.add(App(app_id=app_id, name=app_id, platform="ios", created_at_ms=FROM_MS))
        session.flush()
        session.execute(insert(Install), data["installs"])
        write_audit_rows(session, data["audit"], now_ms=FROM_MS - 10 * DAY)  # as the audit writer does
        session.execute(insert(SkanPostback), data["skan"])


Window = tuple[int, int]
WHOLE: Window = (FROM_MS, TO_MS)


def in_range(ms: int | None, window: Window) -> bool:
    return ms is not None and window[0] <= ms < window[1]


# ----------------------------------------------------------------------------------- the expected figures


def expected_installs(data: dict[str, list[dict[str, Any]]], group_by: str, window: Window
                 ) -> dict[tuple[Any, ...], dict[str, Any]]:
    keys = KEYS["installs"][group_by]
    rows: dict[tuple[Any, ...], dict[str, Any]] = defaultdict(lambda: {"installs": 0, "reinstalls": 0})

    def key(row: dict[str, Any], at: int) -> tuple[Any, ...]:
        values = {"day": day(at), "attributed": row["attributed"], "network": row["network"],
                  "campaign": row["campaign"]}
        return tuple(values[k] for k in keys)

    for row in data["installs"]:
        if row["app_id"] != APP or row["sandbox"]:
            continue
        if in_range(row["installed_at_ms"], window):
            rows[key(row, row["installed_at_ms"])]["installs"] += 1
        reinstalled = row["last_install_event_id"] is not None and row["last_install_event_id"] != row["event_id"]
        if reinstalled and in_range(row["last_install_at_ms"], window):
            rows[key(row, row["last_install_at_ms"])]["reinstalls"] += 1
    return dict(rows)


def expected_conversions(data: dict[str, list[dict[str, Any]]], group_by: str, window: Window
                 ) -> dict[tuple[Any, ...], dict[str, Any]]:
    """An event counts once, on the day of its first audit row (sandbox rows and SKAN forwards aside), if that
    is in the range; `delivered` once, on the day of its first delivered row, if that is."""
    keys = KEYS["conversions"][group_by]
    events: dict[str, dict[str, Any]] = {}
    for row in data["audit"]:
        if row["app_id"] != APP or row["status"] == "sandbox" or row["network"] == "skan_postback":
            continue
        event = events.setdefault(row["event_id"], {"names": set(), "first": row["recorded_at_ms"],
                                                    "delivered": None, "rows": []})
        event["first"] = min(event["first"], row["recorded_at_ms"])
        if row["status"] == "delivered":
            event["delivered"] = min(event["delivered"] or row["recorded_at_ms"], row["recorded_at_ms"])
        event["rows"].append(row)
    rows: dict[tuple[Any, ...], dict[str, Any]] = defaultdict(lambda: {"events": 0, "delivered": 0, "revenue": None})
    for event in events.values():
        for at, figure in ((event["first"], "events"), (event["delivered"], "delivered")):
            if not in_range(at, window):
                continue
            # its name as the report knows it: from the rows of the part of the range it was counted in
            names = {r["event_name"] for r in event["rows"] if r["event_name"] is not None}
            assert len(names) <= 1
            values = {"day": day(at), "event_name": next(iter(names), None)}
            rows[tuple(values[k] for k in keys)][figure] += 1
    return dict(rows)


def expected_forwards(data: dict[str, list[dict[str, Any]]], group_by: str, window: Window
                 ) -> dict[tuple[Any, ...], dict[str, Any]]:
    keys = KEYS["forwards"][group_by]
    rows: dict[tuple[Any, ...], dict[str, Any]] = defaultdict(lambda: {**dict.fromkeys(STATUSES, 0), "total": 0})
    for row in data["audit"]:
        if row["app_id"] != APP or not in_range(row["recorded_at_ms"], window):
            continue
        values = {"day": day(row["recorded_at_ms"]), "network": row["network"]}
        found = rows[tuple(values[k] for k in keys)]
        found[row["status"]] += 1
        found["total"] += 1
    return dict(rows)


def expected_skan(data: dict[str, list[dict[str, Any]]], group_by: str, window: Window
                 ) -> dict[tuple[Any, ...], dict[str, Any]]:
    keys = KEYS["skan"][group_by]
    rows: dict[tuple[Any, ...], dict[str, Any]] = defaultdict(lambda: {
        "postbacks": 0, "counted_as_install": 0, "installs": 0, "redownloads": 0, "events": 0, "revenue": {}})
    for row in data["skan"]:
        if row["app_id"] != APP or not in_range(row["received_at_ms"], window):
            continue
        postback = row["postback"]
        campaign = postback.get("source-identifier", postback.get("campaign-id"))
        values = {"day": day(row["received_at_ms"]), "ad_network_id": row["ad_network_id"],
                  "campaign": None if campaign is None else str(campaign),
                  "country": postback.get("ad-network-country-code")}
        found = rows[tuple(values[k] for k in keys)]
        found["postbacks"] += 1
        found["counted_as_install"] += row["counted_as_install"]
        for record in row["records"] if row["counted_as_install"] else []:
            if record["kind"] == "install":
                found["installs"] += 1
            elif record["kind"] == "redownload":
                found["redownloads"] += 1
            else:
                found["events"] += record["count"]
                if record["revenue"] is not None:
                    found["revenue"][record["currency"]] = found["revenue"].get(record["currency"], 0) + record[
                        "revenue"]
    return dict(rows)


EXPECTED = {"installs": expected_installs, "conversions": expected_conversions, "forwards": expected_forwards,
            "skan": expected_skan}


def by_key(section: dict[str, Any]) -> dict[tuple[Any, ...], dict[str, Any]]:
    keys = section["keys"]
    found = {tuple(row[k] for k in keys): {m: v for m, v in row.items() if m not in keys} for row in section["rows"]}
    assert len(found) == len(section["rows"]), "a key appears twice"
    return found


def approx_revenue(rows: dict[tuple[Any, ...], dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    for row in rows.values():
        if isinstance(row.get("revenue"), dict):
            row["revenue"] = {code: pytest.approx(amount) for code, amount in row["revenue"].items()}
    return rows


def check_report(report: dict[str, Any], data: dict[str, list[dict[str, Any]]], group_by: str,
                 window: Window = WHOLE) -> None:
    assert (report["app_id"], report["from_ms"], report["to_ms"], report["group_by"]) == (
        APP, *window, group_by)
    for name, expected in EXPECTED.items():
        section = report[name]
        assert tuple(section["keys"]) == KEYS[name][group_by], name
        assert section["grouped_by"] == (group_by if group_by in GROUPED[name] else None), name
        want = approx_revenue(expected(data, group_by, window))
        assert by_key(section) == want, f"{name} group_by={group_by}"
        rows = section["rows"]
        assert rows == sorted(rows, key=lambda r: tuple((r[k] is not None, r[k] if r[k] is not None else "")
                                                        for k in section["keys"])), f"{name}: not in key order"
    installs = report["installs"]["totals"]
    live = [r for r in data["installs"]
            if r["app_id"] == APP and not r["sandbox"] and in_range(r["installed_at_ms"], window)]
    assert installs["installs"] == len(live) and installs["attributed"] == sum(r["attributed"] for r in live)
    assert installs["organic"] == len(live) - installs["attributed"]
    forwards = report["forwards"]["totals"]
    assert forwards["total"] == sum(1 for r in data["audit"]
                                    if r["app_id"] == APP and in_range(r["recorded_at_ms"], window))
    conversions = report["conversions"]
    assert conversions["revenue_recorded"] is False and conversions["totals"]["revenue"] is None
    counted = [r for r in data["audit"] if r["app_id"] == APP and r["status"] != "sandbox"
               and r["network"] != "skan_postback"]
    firsts: dict[str, int] = {}
    for r in counted:
        firsts[r["event_id"]] = min(firsts.get(r["event_id"], r["recorded_at_ms"]), r["recorded_at_ms"])
    assert conversions["totals"]["events"] == sum(in_range(at, window) for at in firsts.values())


def check_csv(text: str, report: dict[str, Any], data: dict[str, list[dict[str, Any]]], group_by: str,
              window: Window = WHOLE) -> None:
    """The long table holds every figure of the expected rows (counted from the raw rows), and nothing else."""
    table = list(csv.DictReader(io.StringIO(text)))
    assert table and list(table[0]) == ["section", "day", "attributed", "network", "campaign", "country",
                                        "event_name", "currency", "metric", "value"]

    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return "'" + value if isinstance(value, str) and value.startswith("=") else str(value)

    want: dict[tuple[str, ...], float] = {}
    for name, expected in EXPECTED.items():
        keys = KEYS[name][group_by]
        for key, figures in expected(data, group_by, window).items():
            base = {"network" if k == "ad_network_id" else k: cell(v) for k, v in zip(keys, key, strict=True)}
            for metric, value in figures.items():
                if isinstance(value, dict):
                    for code, amount in value.items():
                        want[_csv_key(name, {**base, "currency": code}, metric)] = amount
                elif value is not None:
                    want[_csv_key(name, base, metric)] = value
    got = {_csv_key(row["section"], row, row["metric"]): float(row["value"]) for row in table}
    assert len(got) == len(table), "a figure appears twice"
    assert got == {key: pytest.approx(value) for key, value in want.items()}


def _csv_key(section: str, row: dict[str, str], metric: str) -> tuple[str, ...]:
    columns = ("day", "attributed", "network", "campaign", "country", "event_name", "currency")
    return (section, *(row.get(c, "") for c in columns), metric)


# ------------------------------------------------------------------------------------------- the store


@dataclass
class Loaded:
    store: AdminStore
    data: dict[str, list[dict[str, Any]]]
    engine: Engine
    sessions: sessionmaker[Session]


@pytest.fixture(params=["postgresql", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Loaded]:
    if request.param == "postgresql":
        url = request.getfixturevalue("migrated_pg_url")
    else:
        url = f"sqlite:///{tmp_path / 'reports.db'}"
        upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    data = dataset()
    load(sessions, data)
    yield Loaded(AdminStore(sessions, None), data, engine, sessions)
    engine.dispose()


def test_every_group_by_matches_the_rows_in_json_and_csv(store: Loaded) -> None:
    for group_by in GROUP_BYS:
        report = store.store.report(ReportRequest(APP, FROM_MS, TO_MS, cast(GroupBy, group_by)))
        check_report(report, store.data, group_by)
        check_csv(report_csv(report), report, store.data, group_by)
    # the data set reaches every kind of figure (a report of zeros would pass the comparisons above too)
    report = store.store.report(ReportRequest(APP, FROM_MS, TO_MS, "day"))
    assert report["installs"]["totals"]["reinstalls"] > 0 and report["installs"]["totals"]["organic"] > 0
    assert all(report["forwards"]["totals"][s] > 0 for s in STATUSES)
    skan = report["skan"]["totals"]
    assert skan["redownloads"] > 0 and skan["events"] > 0 and set(skan["revenue"]) == {"USD", "EUR"}


# ---------------------------------------------------------------------------------------------- rollups

ROLL = RollSettings(settle_ms=0, retention_days=dict.fromkeys(("installs", "audit_log", "skan_postbacks"), 3650))
LATER = TO_MS + 10 * DAY  # every day of the data set is over, and rolled
WINDOWS: tuple[Window, ...] = (WHOLE, (FROM_MS + 5 * 3_600_000, TO_MS - 3 * 3_600_000), (FROM_MS - DAY, TO_MS + DAY),
                               (FROM_MS + DAY, FROM_MS + 2 * DAY))


def row_days(data: dict[str, list[dict[str, Any]]], app_id: str) -> tuple[int, int]:
    """The days of the app's oldest and newest rows (what the report counts)."""
    times = [at for r in data["installs"] if r["app_id"] == app_id and not r["sandbox"]
             for at in (r["installed_at_ms"], r["last_install_at_ms"] if r["last_install_event_id"] not in (
                 None, r["event_id"]) else None) if at is not None]
    times += [r["recorded_at_ms"] for r in data["audit"] if r["app_id"] == app_id]
    times += [r["received_at_ms"] for r in data["skan"] if r["app_id"] == app_id]
    return min(times) // DAY, max(times) // DAY


def oldest_day(data: dict[str, list[dict[str, Any]]], app_id: str) -> int:
    return row_days(data, app_id)[0]


def days_with_rows(data: dict[str, list[dict[str, Any]]], app_id: str) -> int:
    """The days a first roll rolls: the oldest row's to the newest's (the empty days after it are skipped)."""
    first, last = row_days(data, app_id)
    return last - first + 1


def check_every_window(store: Loaded, windows: tuple[Window, ...] = WINDOWS) -> None:
    for window in windows:
        for group_by in GROUP_BYS:
            report = store.store.report(ReportRequest(APP, *window, cast(GroupBy, group_by)))
            check_report(report, store.data, group_by, window)
            if group_by == "day":
                check_csv(report_csv(report), report, store.data, group_by, window)


def test_rolled_up_days_answer_as_the_rows_do_and_outlive_them(store: Loaded) -> None:
    result = roll_due(store.engine, ROLL, now_ms=LATER)
    first = oldest_day(store.data, APP)
    # both apps, every day from their oldest row's to their newest's; the empty days after it skipped
    assert result.app_days == sum(days_with_rows(store.data, app) for app in (APP, OTHER))
    assert not result.busy_apps
    with store.sessions() as session:
        state = session.get(ReportRollupState, APP)
        assert state is not None and (state.first_day, state.through_day) == (first, LATER // DAY - 1)
        assert session.scalar(select(func.sum(ReportInstallDay.installs)).where(ReportInstallDay.app_id == APP)) == sum(
            1 for r in store.data["installs"] if r["app_id"] == APP and not r["sandbox"])
    check_every_window(store)
    # A second round has nothing to do; days closed since, with no rows, are passed over without a roll.
    assert roll_due(store.engine, ROLL, now_ms=LATER).app_days == 0
    assert roll_due(store.engine, ROLL, now_ms=LATER + 5 * DAY).app_days == 0
    with store.sessions() as session:
        assert session.get(ReportRollupState, APP).through_day == (LATER + 5 * DAY) // DAY - 1  # type: ignore[union-attr]
    # The rolled days are read from the rollups: with the raw rows gone (pruned), the figures of whole days stay.
    with store.sessions.begin() as session:
        for model in (Install, AuditEntry, SkanPostback):
            session.execute(delete(model))
    check_every_window(store, tuple(w for w in WINDOWS if w[0] % DAY == 0 and w[1] % DAY == 0))


def test_a_day_changed_after_its_roll_is_answered_from_its_rows_until_rolled_again(store: Loaded) -> None:
    roll_due(store.engine, ROLL, now_ms=LATER)
    day2 = FROM_MS + DAY + 7_200_000
    late_install = {"app_id": APP, "device_id": "device-late", "sandbox": False, "event_id": "ev-late",
                    "installed_at_ms": day2, "attributed": True, "matched_by": "click_id", "network": "meta",
                    "campaign": "spring", "last_install_event_id": "ev-late", "last_install_at_ms": day2}
    late_audit = [{"audit_id": uuid.uuid4().hex, "app_id": APP, "event_id": "event-late", "event_name": "purchase",
                   "network": "meta", "status": status, "attempts": 1, "recorded_at_ms": at}
                  for status, at in (("retrying", day2), ("delivered", day2 + DAY))]  # delivered the day after
    with store.sessions.begin() as session:  # what the attribution and audit writers do with late rows
        session.execute(insert(Install), [late_install])
        assert mark_stale(session, "installs", [(APP, day2)], now_ms=LATER) == 1
        assert mark_stale(session, "installs", [(APP, LATER)], now_ms=LATER) == 0  # today: nothing to mark
        write_audit_rows(session, late_audit, now_ms=LATER)
    with store.sessions() as session:
        assert sorted(session.execute(select(ReportStaleDay.day, ReportStaleDay.source)).all()) == [
            (day2 // DAY, "audit_events"), (day2 // DAY, "audit_log"), (day2 // DAY, "installs"),
            (day2 // DAY + 1, "audit_events"), (day2 // DAY + 1, "audit_log")]
    store.data["installs"].append(late_install)
    store.data["audit"].extend(late_audit)
    check_every_window(store)  # the marked days from their rows
    result = roll_due(store.engine, ROLL, now_ms=LATER)
    assert result.app_days == 2  # day 2 (installs, audit_log, audit_events) and day 3 (audit_log, audit_events)
    with store.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ReportStaleDay)) == 0
    check_every_window(store)


def test_two_rollers_at_once_roll_each_day_once(store: Loaded) -> None:
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: roll_due(store.engine, ROLL, now_ms=LATER), range(2)))
    days = sum(days_with_rows(store.data, app) for app in (APP, OTHER))
    # every app-day rolled by one of them at least (the other one may roll some again, or find them busy)
    assert sum(r.app_days for r in results) >= days or any(r.busy_apps for r in results)
    roll_due(store.engine, ROLL, now_ms=LATER)  # what a busy app had left
    with store.sessions() as session:
        per_day = session.execute(select(ReportInstallDay.day, ReportInstallDay.attributed, ReportInstallDay.network,
                                         ReportInstallDay.campaign, func.count())
                                  .where(ReportInstallDay.app_id == APP)
                                  .group_by(ReportInstallDay.day, ReportInstallDay.attributed,
                                            ReportInstallDay.network, ReportInstallDay.campaign)).all()
    assert per_day and all(row[-1] == 1 for row in per_day), "a key written twice for one day"
    check_every_window(store)


def test_an_empty_range_and_an_unknown_app(store: Loaded) -> None:
    admin_store = store.store
    later = TO_MS + 30 * DAY
    report = admin_store.report(ReportRequest(APP, later, later + DAY, "network"))
    for name in EXPECTED:
        assert report[name]["rows"] == []
    assert report["installs"]["totals"] == {"installs": 0, "attributed": 0, "organic": 0, "reinstalls": 0}
    assert report["skan"]["totals"]["revenue"] == {}
    with pytest.raises(NotFound):
        admin_store.report(ReportRequest("app_missing", FROM_MS, TO_MS, "day"))


# ---------------------------------------------------------------------------------- through the service


@dataclass
class Running:
    edge: Edge
    data: dict[str, list[dict[str, Any]]]
    env: dict[str, str]


@pytest.fixture(scope="module")
def edge(postgres_server_url: str, module_bootstrap: str,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    database_url = create_database(postgres_server_url, f"reports_{uuid.uuid4().hex}")
    upgrade(database_url)
    engine = make_engine(database_url)
    data = dataset(seed=7)
    load(make_sessionmaker(engine), data)
    engine.dispose()
    create_topics(module_bootstrap, partitions=1, replication=1)
    env = service_env(module_bootstrap, database_url)
    running = start_edge(env, tmp_path_factory.mktemp("reports"))
    try:
        yield Running(running, data, env)
    finally:
        running.terminate()


def get(edge: Edge, query: str, token: str | None = ADMIN_TOKEN) -> tuple[int, dict[str, str], Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http_call("GET", f"{edge.admin_base}/admin/v1/apps/{query}", headers=headers)


def test_the_report_route(edge: Running) -> None:
    running, data = edge.edge, edge.data
    status, headers, report = get(running, f"{APP}/report?from=2026-03-01&to=2026-03-05&group_by=campaign")
    assert status == 200 and headers["content-type"].startswith("application/json")
    check_report(report, data, "campaign")

    status, headers, body = get(running, f"{APP}/report?from={FROM_MS}&to={TO_MS}&format=csv")
    assert status == 200, body
    assert headers["content-type"] == "text/csv; charset=utf-8"
    assert headers["content-disposition"] == (
        f'attachment; filename="apprefer-report-{APP}-2026-03-01-to-2026-03-05-by-day.csv"')
    _, _, as_json = get(running, f"{APP}/report?from={FROM_MS}&to={TO_MS}")
    check_csv(body.decode(), as_json, data, "day")

    status, _, report = get(running, f"{APP}/report?from=2026-03-01&to=2026-03-05&group_by=country")
    assert status == 200 and report["installs"]["grouped_by"] is None and report["skan"]["grouped_by"] == "country"
    assert any("no country is recorded" in note for note in report["installs"]["notes"])
    check_report(report, data, "country")

    status, _, report = get(running, f"{APP}/report")  # the last 7 days, today included
    assert status == 200 and report["to_ms"] - report["from_ms"] == 7 * DAY and report["to_ms"] % DAY == 0

    for query, field in ((f"{APP}/report?group_by=week", "group_by"), (f"{APP}/report?format=xml", "format"),
                         (f"{APP}/report?from=yesterday", "from"), (f"{APP}/report?to=2026-02-30", "to"),
                         (f"{APP}/report?from=2026-03-05&to=2026-03-01", "from"),
                         (f"{APP}/report?from=2020-01-01&to=2026-03-01", "to"), (f"{APP}/report?tz=UTC", "tz")):
        status, _, answer = get(running, query)
        assert (status, answer["error"], answer["field"]) == (400, "invalid_request", field), query
    status, _, answer = get(running, "app_missing/report")
    assert (status, answer["error"]) == (404, "not_found")
    status, _, answer = get(running, f"{APP}/report", token=None)
    assert (status, answer["error"]) == (401, "unauthorized")
    status, _, answer = get(running, f"{APP}/report", token="wrong")
    assert status == 401


def test_an_app_whose_roll_fails_costs_only_itself(store: Loaded, monkeypatch: pytest.MonkeyPatch) -> None:
    import shared.reports.roller as roller

    real = roller.roll_day

    def failing_for_app(session: Session, app_id: str, day: int, sources: Any) -> int:
        if app_id == OTHER:
            raise ValueError("a bug met in one app's rows")
        return real(session, app_id, day, sources)

    monkeypatch.setattr(roller, "roll_day", failing_for_app)
    result = roll_due(store.engine, ROLL, now_ms=LATER)
    assert result.failed_apps == [OTHER] and result.app_days == days_with_rows(store.data, APP)
    check_every_window(store)  # APP from its rollups; OTHER (not checked here) is read from its rows
    monkeypatch.setattr(roller, "roll_day", real)
    assert roll_due(store.engine, ROLL, now_ms=LATER).app_days == days_with_rows(store.data, OTHER)


def test_apprefer_db_rollup_rolls_the_history_and_the_route_answers_the_same(edge: Running) -> None:
    running, data = edge.edge, edge.data
    apprefer = [sys.executable, "-m", "services.cli", "db", "rollup"]
    done = subprocess.run([*apprefer, "--app", APP, "--json"], env=edge.env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["app_days"] == days_with_rows(data, APP)
    assert answer["rows"] > 0 and answer["busy_apps"] == answer["failed_apps"] == []
    for group_by in GROUP_BYS:
        status, _, report = get(running, f"{APP}/report?from={FROM_MS}&to={TO_MS}&group_by={group_by}")
        assert status == 200
        check_report(report, data, group_by)
    done = subprocess.run(apprefer, env=edge.env, capture_output=True, text=True, timeout=120)  # every app
    assert done.returncode == 0 and "rolled up" in done.stderr, done.stderr
