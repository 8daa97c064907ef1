"""The report's rollups in a running pipeline: the audit service's roller rolls an app's closed days up while the
consumers write, a late install (dated three days back) lands on its day in the rollups, and the report counts it
there. Every service runs as a process against the test broker and PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.orm import sessionmaker

from shared.db.models import ReportInstallDay, ReportRollupState, ReportStaleDay
from shared.settings import DAY_MS
from tests.e2e.conftest import Pipeline
from tests.support.pipeline import wait_until as wait

pytestmark = [pytest.mark.timeout(240), pytest.mark.forwarders("tiktok")]
# The roller every second, each day rolled as soon as it is over (the default waits 15 minutes after midnight).
ROLLING = {"APPREFER_ROLLUP_INTERVAL_SECONDS": "1", "APPREFER_ROLLUP_SETTLE_SECONDS": "0"}


@pytest.fixture
def engine(migrated_pg_url: str) -> Any:
    engine = create_engine(migrated_pg_url)
    yield engine
    engine.dispose()


def rollup_state(engine: Engine, app_id: str) -> tuple[tuple[int, int] | None, int]:
    """The app's rolled span and its stale marks left."""
    with sessionmaker(engine)() as session:
        state = session.get(ReportRollupState, app_id)
        marks = session.scalar(select(func.count()).select_from(ReportStaleDay).where(ReportStaleDay.app_id == app_id))
        return ((state.first_day, state.through_day) if state else None), int(marks or 0)


@pytest.mark.parametrize("pipeline", [ROLLING], indirect=True)
def test_the_audit_services_roller_rolls_a_late_install_and_the_report_stays_the_same(
        pipeline: Pipeline, engine: Engine) -> None:
    app = pipeline.configured_app()
    app_id, now = app["app_id"], int(time.time() * 1000)
    three_days_ago = now - 3 * DAY_MS
    device = {"device_id": "dev-late", "os": "android", "ip": "198.51.100.7"}
    # An install the SDK kept offline for three days (its event time), and a purchase now.
    pipeline.send(app["live_key"], {"event_id": "install-late", "event_name": "install",
                                    "event_time": three_days_ago // 1000, "device": device})
    pipeline.send(app["live_key"], {"event_id": "buy-now", "event_name": "purchase",
                                    "event_time": now // 1000, "device": device,
                                    "revenue": {"amount": 4.99, "currency": "USD"}})
    # Organic (no click): each of the app's three integrations audits them `skipped`.
    wait(lambda: len(pipeline.audit("install-late")) == 3 and len(pipeline.audit("buy-now")) == 3, timeout=60,
         what="both events audited for the three integrations")

    yesterday = now // DAY_MS - 1
    # The roller has the app's days up to yesterday, the install's day among them, and no mark is left.
    wait(lambda: rollup_state(engine, app_id) == ((three_days_ago // DAY_MS, yesterday), 0), timeout=60,
         what="the install's day rolled up")
    with sessionmaker(engine)() as session:
        rolled = session.execute(select(ReportInstallDay.day, ReportInstallDay.attributed, ReportInstallDay.installs)
                                 .where(ReportInstallDay.app_id == app_id)).all()
    assert [tuple(r) for r in rolled] == [(three_days_ago // DAY_MS, False, 1)]

    report = pipeline.admin.call("GET", f"/apps/{app_id}/report?group_by=day")  # the last 7 days, today included
    installs = {(r["day"], r["attributed"]): r["installs"] for r in report["installs"]["rows"]}
    day = time.strftime("%Y-%m-%d", time.gmtime(three_days_ago / 1000))
    assert installs == {(day, False): 1} and report["installs"]["totals"]["organic"] == 1
    conversions = {r["event_name"]: (r["events"], r["delivered"]) for r in report["conversions"]["rows"]}
    assert conversions == {"install": (1, 0), "purchase": (1, 0)}  # audited today, delivered nowhere
    assert (report["forwards"]["totals"]["skipped"], report["forwards"]["totals"]["total"]) == (6, 6)
