"""The dashboard's pages (issue 17: under 300 ms with 10,000 apps and 1,000,000 audit rows in PostgreSQL).

Setup: the report bench's loader (bench/report_bench.py: one app with 1,000,000 installs, 2,000,000 audit rows and
50,000 SKAN postbacks over the last 90 days), then 9,999 more apps, then `apprefer db rollup` (the report's daily
rollups, as the audit service keeps them): 10,000 apps, twice the audit rows the issue
names, all of them the one app's (the worst case for its filtered audit pages and its report). A broker with every
topic (the Health page reads the retry and dead-letter topics' offsets), and for every service but the admin a
health server of the consumers' own kind (shared/health.py, in this process: /readyz, and /metrics with consumer
lag samples), named in APPREFER_HEALTH_TARGETS with the admin service itself.

Measure: `apprefer run admin` as a process; sign in through the dashboard's form (GET /signin for its CSRF
cookie and field, POST /signin with the admin token: a session cookie), then one request at a time, a new
connection each (as the report bench), for each page: p50/p95/max of the answer time. `dashboard_p95_ms` is the
slowest page's p95. The deep apps page's cursor is walked to through GET /admin/v1/apps.

`python -m bench.dashboard_bench` runs it alone against a throwaway PostgreSQL (`--quick`: fewer rounds).
"""

from __future__ import annotations

import http.client
import re
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode

import psycopg

from bench.infra import (
    broker_pid,
    broker_with_topics,
    migrated_database,
    psycopg_url,
    run_alone,
    services,
)
from bench.machine import CpuMeter, wait_until_quiet
from bench.report_bench import APP_ID, AUDIT_ROWS, DAY_MS, DAYS, MIN_ROUNDS, QUIET_CORES, load, percentile, roll_up
from services.catalog import ADMIN
from services.catalog import services as catalog_services
from shared.health import serve_health
from shared.metrics import CONSUMER_LAG
from tests.support.pipeline import ADMIN_TOKEN, http_call, wait_ready
from tests.support.ports import free_port

APPS = 10_000  # the report bench's app and these
TARGET_MS = 300.0
DEEP_APPS = 9_000  # the deep apps page starts after this many apps
SESSION_COOKIE = "apprefer_session"
# (name, path): {app} is the loaded app, {cursor} the deep apps page's cursor. The report page's default range:
# the last 7 days (the report bench's `report_p95_ms` range).
PAGES = (
    ("apps", "/apps"),
    ("apps_deep", "/apps?cursor={cursor}"),
    ("audit", "/audit"),
    ("audit_app_delivered", "/audit?app_id={app}&status=delivered"),
    ("report", "/apps/{app}/reports"),
    ("health", "/health"),
)
# What each page must show (else it measured something else: a sign-in page, an error).
EXPECTED = {"apps": APP_ID, "apps_deep": "app_dash_09", "audit": "delivered", "audit_app_delivered": "delivered",
            "report": "<svg", "health": "forward.meta.dlq"}


@dataclass(frozen=True)
class DashboardDurations:
    rounds: int = 40  # requests per page, at most
    warmup: int = 2
    case_budget_s: float = 8.0  # then fewer rounds (at least MIN_ROUNDS)
    quiet_wait_s: float = 30.0  # after the load, for other work on the machine to calm down


QUICK = DashboardDurations(rounds=5, warmup=1, case_budget_s=2.0)  # --quick: for trying the harness


class DashboardMissing(RuntimeError):
    """The admin service does not serve the dashboard (or not these pages): nothing to measure."""


def load_apps(database_url: str, now_ms: int) -> float:
    """The 9,999 apps beside the report bench's, created after it (the apps list's order is creation time)."""
    start_ms = now_ms - DAYS * DAY_MS
    began = time.monotonic()
    with psycopg.connect(psycopg_url(database_url), autocommit=True) as connection:
        connection.execute(
            "INSERT INTO apps (app_id, name, platform, lookback_days, fingerprint_window_hours, reattribution_days, "
            "max_revenue_amount, created_at_ms, test_app) "
            "SELECT 'app_dash_' || lpad(i::text, 5, '0'), 'Dashboard bench ' || i, "
            "(ARRAY['ios', 'android'])[1 + i %% 2], 7, 24, 90, 1000000, %(start)s + i * 1000, false "
            "FROM generate_series(1, %(n)s) AS i", {"start": start_ms, "n": APPS - 1})
        connection.execute("VACUUM ANALYZE apps")
    return round(time.monotonic() - began, 1)


def get(base: str, path: str, cookie: str = "", timeout: float = 60.0) -> tuple[int, list[tuple[str, str]], bytes]:
    """One request on a connection of its own: status, headers (repeated ones kept), body."""
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        response = connection.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        connection.close()


def sign_in(base: str) -> str:
    """The Cookie header of a session signed in through the dashboard's form."""
    status, headers, body = get(base, "/signin")
    if status == 404:
        raise DashboardMissing(f"GET {base}/signin answered 404: this admin service serves no dashboard "
                               "(services/admin/dashboard/ not wired into services/admin/app.py)")
    if status != 200:
        raise DashboardMissing(f"GET /signin answered {status}: {body[:300]!r}")
    cookies = SimpleCookie()
    for name, value in headers:
        if name.lower() == "set-cookie":
            cookies.load(value)
    field = re.search(rb'name="csrf_token" value="([^"]+)"', body)
    if field is None:
        raise DashboardMissing("the sign-in page has no csrf_token field")
    form = urlencode({"token": ADMIN_TOKEN, "csrf_token": field.group(1).decode(), "next": "/apps"})
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("POST", "/signin", body=form, headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": "; ".join(f"{name}={morsel.value}" for name, morsel in cookies.items())})
        response = connection.getresponse()
        answer, signed = response.status, SimpleCookie()
        for value in response.headers.get_all("Set-Cookie") or []:
            signed.load(value)
        text = response.read()
    finally:
        connection.close()
    session = signed.get(SESSION_COOKIE)
    if answer != 303 or session is None or not session.value:
        raise DashboardMissing(f"POST /signin with the admin token answered {answer} without a session cookie: "
                               f"{text[:300]!r}")
    return f"{SESSION_COOKIE}={session.value}"


def deep_cursor(base: str) -> str:
    """The cursor of the page after the first DEEP_APPS apps, walked to through the admin API."""
    cursor: str | None = None
    walked = 0
    while walked < DEEP_APPS:
        query = urlencode({"limit": 1000, **({"cursor": cursor} if cursor else {})})
        status, _, page = http_call("GET", f"{base}/admin/v1/apps?{query}",
                                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
        assert status == 200 and page["next"], (status, str(page)[:300])
        cursor, walked = page["next"], walked + len(page["apps"])
    assert cursor is not None
    return cursor


def measure(base: str, name: str, path: str, cookie: str, durations: DashboardDurations) -> dict[str, Any]:
    """One request at a time (a person at the dashboard): the answer time as the client sees it."""
    times: list[float] = []
    size = 0
    started = time.monotonic()
    for round_ in range(durations.warmup + durations.rounds):
        if len(times) >= MIN_ROUNDS and time.monotonic() - started > durations.case_budget_s:
            break
        began = time.perf_counter()
        status, _, body = get(base, path, cookie)
        elapsed = (time.perf_counter() - began) * 1000
        if status == 404:
            raise DashboardMissing(f"GET {path} answered 404: the dashboard has no such page")
        assert status == 200, f"{name} {path}: {status} {body[:300]!r}"
        assert EXPECTED[name].encode() in body, f"{name} {path}: {EXPECTED[name]!r} not in the page"
        if round_ >= durations.warmup:
            times.append(elapsed)
        size = len(body)
    return {"path": path, "p50_ms": round(percentile(times, 50), 1), "p95_ms": round(percentile(times, 95), 1),
            "max_ms": round(max(times), 1), "requests": len(times), "answer_bytes": size}


def health_stand_ins(stack: ExitStack) -> dict[str, str]:
    """A health server per service but the admin (the consumers' own, shared/health.py), by service name, and
    lag samples on their /metrics (this process's registry, which they all serve)."""
    for partition in range(6):
        CONSUMER_LAG.labels("attribution", "clicks.raw", str(partition)).set(100 + partition)
    targets: dict[str, str] = {}
    for service in catalog_services():
        if service == ADMIN:
            continue
        port = free_port()
        server = serve_health(port, {})
        stack.callback(server.server_close)
        stack.callback(server.shutdown)
        targets[service.name] = f"http://127.0.0.1:{port}"
    return targets


def run_dashboard_bench(pg_server: str, meter: CpuMeter, durations: DashboardDurations,
                        log: Callable[[str], None]) -> dict[str, Any]:
    database = migrated_database(pg_server, "dashboard")
    now_ms = int(time.time() * 1000)
    log(f"dashboard: loading {APPS:,} apps and the report bench's rows ({AUDIT_ROWS:,} audit rows)")
    began = time.monotonic()
    steps = load(database, now_ms, log)
    steps["more_apps"] = load_apps(database, now_ms)
    log(f"  {APPS - 1:,} more apps: {steps['more_apps']} s")
    steps["rollup"], rolled = roll_up(database)  # what the audit service's roller keeps: the report page reads it
    log(f"  apprefer db rollup: {rolled['app_days']} app-days in {steps['rollup']} s")
    setup_s = round(time.monotonic() - began, 1)
    cases: dict[str, dict[str, Any]] = {}
    with ExitStack() as stack:
        broker = stack.enter_context(broker_with_topics())
        meter.label(broker_pid(broker), "broker")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        targets = {"admin": base, **health_stand_ins(stack)}
        running = stack.enter_context(services(
            broker.bootstrap, database, APPREFER_ADMIN_PORT=str(port),
            APPREFER_HEALTH_TARGETS=",".join(f"{name}={url}" for name, url in targets.items())))
        admin = running.start("admin", ["run", "admin"])

        wait_ready(admin, base, "admin")
        if admin.process is not None:
            meter.label(admin.process.pid, "admin")
        cookie = sign_in(base)
        cursor = deep_cursor(base)
        background = wait_until_quiet(meter, durations.quiet_wait_s, QUIET_CORES, log)
        before = meter.snapshot()
        for name, template in PAGES:
            path = template.format(app=APP_ID, cursor=cursor)
            cases[name] = result = measure(base, name, path, cookie, durations)
            log(f"  {name} {path}: p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms "
                f"({result['requests']} requests, {result['answer_bytes']:,} bytes)")
        cpu = meter.usage(before, meter.snapshot())
        admin.assert_alive()
    return {
        "dashboard_p95_ms": max(case["p95_ms"] for case in cases.values()),
        "details": {
            "rows": {"apps": APPS, "audit_log": AUDIT_ROWS, "days": DAYS}, "setup_s": setup_s,
            "setup_steps_s": steps, "cases": cases, "rounds_at_most": durations.rounds,
            "health_targets": len(targets), "background_cores_before": background, "cpu": cpu,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        "profiles": {},
    }


def main() -> None:
    run_alone("python -m bench.dashboard_bench", run_dashboard_bench, DashboardDurations(), QUICK)


if __name__ == "__main__":
    main()
