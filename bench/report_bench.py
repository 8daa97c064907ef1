"""The app report (`GET /admin/v1/apps/{app_id}/report`) on 1,000,000 installs and 2,000,000 audit rows.

Setup: a migrated PostgreSQL database, filled by `INSERT ... SELECT ... FROM generate_series` (the rows are
made by the server, nothing crosses the wire), then VACUUM ANALYZE (the visibility map the index-only scans
need, and the statistics), as autovacuum would leave a table that size. All rows belong to the one app
reported on, the worst case for one report: 1,000,000 installs (5 % sandbox, 60 % of the live ones attributed
to 5 networks x 20 campaigns, 10 % reinstalled), 2,000,000 audit rows (about 1,000,000 events of 8 names to 4
networks plus SKAN forwards, every status), 50,000 SKAN postbacks, spread evenly over the last 90 days.

Measure: `apprefer run admin` as a process, one request at a time over HTTP. First from the raw rows alone
(no rollups yet, as right after an upgrade): the default range (the last 7 days), each group_by
(`report_raw_p95_ms`). Then `apprefer db rollup` rolls the 89 closed days up (what the audit service's roller
does; its time is `report_rollup_s`), and the report is measured again for the default range, 30 days and the
whole 90 days, each group_by, JSON (and CSV for the default range): p50/p95/max of the answer time.
`report_p95_ms` is the default range's worst group_by p95 with the rollups, as a running system has them.

`python -m bench.report_bench` runs it alone against a throwaway PostgreSQL (`--quick`: fewer rounds).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from bench.infra import LOGS, migrated_database, psycopg_url, run_alone
from bench.machine import CpuMeter, wait_until_quiet
from tests.support.pipeline import ADMIN_TOKEN, ServiceProcess, http_call, service_env, wait_ready
from tests.support.ports import free_port

APP_ID = "app_report_bench"
INSTALLS = 1_000_000
AUDIT_ROWS = 2_000_000
SKAN_POSTBACKS = 50_000
DAYS = 90
DAY_MS = 86_400_000
GROUP_BYS = ("day", "network", "campaign", "country")
RANGES = (("7d", None), ("30d", 30), ("90d", 90))  # None: the default range, no from/to
TARGET_MS = 200.0


@dataclass(frozen=True)
class ReportDurations:
    rounds: int = 40  # requests per (range, group_by, format), at most
    warmup: int = 2
    case_budget_s: float = 8.0  # then fewer rounds (at least MIN_ROUNDS): the 90-day answers take seconds
    quiet_wait_s: float = 30.0  # after the load, for other work on the machine to calm down


QUICK = ReportDurations(rounds=5, warmup=1, case_budget_s=2.0)  # --quick: for trying the harness
MIN_ROUNDS = 5
QUIET_CORES = 0.25


def percentile(values: list[float], pct: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def load(database_url: str, now_ms: int, log: Callable[[str], None]) -> dict[str, float]:
    """Fills the tables; returns the seconds each step took."""
    start_ms = now_ms - DAYS * DAY_MS
    span = DAYS * DAY_MS
    steps: dict[str, float] = {}
    params = {"app": APP_ID, "start": start_ms, "span": span, "now": now_ms}
    statements = {
        "apps": ("INSERT INTO apps (app_id, name, platform, lookback_days, fingerprint_window_hours, "
                 "reattribution_days, max_revenue_amount, created_at_ms, test_app) VALUES "
                 "(%(app)s, 'Report bench', 'ios', 7, 24, 90, 1000000, %(start)s, false)", {}),
        # i in time order (as the consumers write them); h a cheap hash of i for the spread of values.
        "installs": ("""
            INSERT INTO installs (app_id, device_id, sandbox, event_id, installed_at_ms, attributed, matched_by,
                                  network, campaign, click_id_type, click_id, click_key, click_time_ms,
                                  last_install_event_id, last_install_at_ms)
            SELECT %(app)s, 'device-' || i, h %% 20 = 0, 'install-' || i, t, a,
                   CASE WHEN a THEN 'click_id' END,
                   CASE WHEN a THEN (ARRAY['meta','tiktok','google_ads','snapchat','applovin'])[1 + (h %% 5)::int] END,
                   CASE WHEN a THEN 'campaign-' || (h / 5 %% 20) END,
                   CASE WHEN a THEN 'fbclid' END, CASE WHEN a THEN 'click-' || i END,
                   CASE WHEN a THEN 'key-' || i END, CASE WHEN a THEN t - 3600000 END,
                   CASE WHEN r THEN 'reinstall-' || i ELSE 'install-' || i END,
                   CASE WHEN r THEN LEAST(t + (h %% 30) * 86400000, %(now)s) ELSE t END
            FROM (SELECT i, h, %(start)s + i * %(span)s / %(n)s AS t, h %% 10 < 6 AS a, h %% 100 >= 90 AS r
                  FROM (SELECT i, (i * 2654435761) %% 1000003 AS h FROM generate_series(0::bigint, %(n)s - 1) AS i) s) s
        """, {"n": INSTALLS}),
        # Two rows per event on average: two networks, a retry now and then, SKAN forwards, sandbox events.
        "audit_log": ("""
            INSERT INTO audit_log (audit_id, app_id, event_id, event_name, network, status, attempts,
                                   http_status, error_code, detail, latency_ms, request_hash, recorded_at_ms)
            SELECT 'audit-' || i, %(app)s,
                   CASE WHEN skan THEN 'postback-' || i ELSE 'event-' || (i / 2) END,
                   CASE WHEN skan THEN 'install'
                        ELSE (ARRAY['purchase','subscribe','start_trial','add_to_cart','level_complete',
                                    'login','tutorial_complete','install'])[1 + (e %% 8)::int] END,
                   CASE WHEN skan THEN 'skan_postback'
                        ELSE (ARRAY['meta','tiktok','google_ads','snapchat'])[1 + (i %% 2)::int
                                                                       + 2 * ((e / 8) %% 2)::int] END,
                   CASE WHEN NOT skan AND e %% 20 = 0 THEN 'sandbox'
                        ELSE (ARRAY['delivered','delivered','delivered','delivered','delivered','delivered',
                                    'delivered','delivered','delivered','delivered','delivered','delivered',
                                    'delivered','delivered','skipped','skipped','retrying','rejected',
                                    'dead_lettered','retrying'])[1 + (h %% 20)::int] END,
                   1 + h %% 3, 200, NULL, NULL, 40 + h %% 200, NULL,
                   %(start)s + i * %(span)s / %(n)s
            FROM (SELECT i, i %% 50 = 49 AS skan, ((i / 2) * 40503) %% 1000003 AS e,
                         (i * 2654435761) %% 1000003 AS h FROM generate_series(0::bigint, %(n)s - 1) AS i) s
        """, {"n": AUDIT_ROWS}),
        "skan_postbacks": ("""
            INSERT INTO skan_postbacks (transaction_id, sequence_index, app_id, apple_app_id, ad_network_id,
                                        version, signature, reason, did_win, counted_as_install, conversion_value,
                                        coarse_conversion_value, value_source, sources, postback, raw_body,
                                        schema_id, records, duplicates, received_at_ms)
            SELECT 'tx-' || i, 0, %(app)s, '123456789', n, '4.0', 'valid', NULL, true, w, v, NULL,
                   'network', 'network',
                   json_build_object('ad-network-id', n, 'source-identifier', lpad((h %% 40)::text, 4, '0'),
                                     'conversion-value', v, 'version', '4.0',
                                     'ad-network-country-code', (ARRAY['US','DE','FR','JP','BR'])[1 + (h %% 5)::int]),
                   '', 's1',
                   CASE WHEN w THEN json_build_array(
                       json_build_object('kind', 'install', 'event_name', NULL, 'count', 1, 'revenue', NULL,
                                         'currency', NULL),
                       json_build_object('kind', 'event', 'event_name', 'purchase', 'count', 1 + h %% 3,
                                         'revenue', v + 0.99, 'currency', 'USD'))
                   ELSE json_build_array() END,
                   0, %(start)s + i * %(span)s / %(n)s
            FROM (SELECT i, h, (ARRAY['net1.skadnetwork', 'net2.skadnetwork', 'net3.skadnetwork'])
                               [1 + (h %% 3)::int] AS n,
                         (h %% 64)::int AS v, h %% 10 <> 0 AS w
                  FROM (SELECT i, (i * 2654435761) %% 1000003 AS h FROM generate_series(0::bigint, %(n)s - 1) AS i) s) s
        """, {"n": SKAN_POSTBACKS}),
        # What the audit writer keeps of those rows (shared/reports/events.py): each event's first row and delivery.
        "audit_events": ("""
            INSERT INTO audit_events (app_id, event_id, event_name, first_ms, delivered_ms)
            SELECT app_id, event_id, max(event_name), min(recorded_at_ms),
                   min(CASE WHEN status = 'delivered' THEN recorded_at_ms END)
            FROM audit_log WHERE status <> 'sandbox' AND network <> 'skan_postback' GROUP BY app_id, event_id
        """, {}),
    }
    with psycopg.connect(psycopg_url(database_url), autocommit=True) as connection:
        for table, (statement, extra) in statements.items():
            began = time.monotonic()
            connection.execute(statement.encode(), {**params, **extra})
            steps[table] = round(time.monotonic() - began, 1)
            log(f"  {table}: {steps[table]} s")
        began = time.monotonic()
        connection.execute("VACUUM ANALYZE installs, audit_log, skan_postbacks, audit_events")
        steps["vacuum_analyze"] = round(time.monotonic() - began, 1)
        log(f"  vacuum analyze: {steps['vacuum_analyze']} s")
    return steps


def start_admin(database_url: str) -> tuple[ServiceProcess, str]:
    LOGS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    # The report needs no broker: the admin service reaches Kafka only to list dead letters.
    env = service_env("127.0.0.1:1", database_url, APPREFER_ADMIN_PORT=str(port))
    process = ServiceProcess(["run", "admin"], env, LOGS).start()
    base = f"http://127.0.0.1:{port}"

    wait_ready(process, base, "admin")
    return process, base


def roll_up(database_url: str) -> tuple[float, dict[str, Any]]:
    """`apprefer db rollup --json` as a process: its seconds and its answer."""
    env = service_env("127.0.0.1:1", database_url)
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "services.cli", "db", "rollup", "--json"], env=env,
                          capture_output=True, check=True, timeout=1800)
    return round(time.monotonic() - began, 1), json.loads(done.stdout)


def measure(base: str, path: str, durations: ReportDurations) -> dict[str, Any]:
    """One request at a time (a person at the dashboard): the answer time as the client sees it."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    times: list[float] = []
    size = 0
    started = time.monotonic()
    for round_ in range(durations.warmup + durations.rounds):
        if len(times) >= MIN_ROUNDS and time.monotonic() - started > durations.case_budget_s:
            break
        began = time.perf_counter()
        status, _, body = http_call("GET", f"{base}{path}", headers=headers, timeout=120)
        elapsed = (time.perf_counter() - began) * 1000
        assert status == 200, f"{path}: {status} {body!r}"[:500]
        if round_ >= durations.warmup:
            times.append(elapsed)
        size = len(body) if isinstance(body, bytes) else len(json.dumps(body).encode())
    return {"p50_ms": round(percentile(times, 50), 1), "p95_ms": round(percentile(times, 95), 1),
            "max_ms": round(max(times), 1), "requests": len(times), "answer_bytes": size}


def run_report_bench(pg_server: str, meter: CpuMeter, durations: ReportDurations,
                     log: Callable[[str], None]) -> dict[str, Any]:
    database = migrated_database(pg_server, "report")
    now_ms = int(time.time() * 1000)
    log(f"report: loading {INSTALLS:,} installs, {AUDIT_ROWS:,} audit rows, {SKAN_POSTBACKS:,} SKAN postbacks")
    began = time.monotonic()
    steps = load(database, now_ms, log)
    setup_s = round(time.monotonic() - began, 1)
    admin, base = start_admin(database)
    if admin.process is not None:
        meter.label(admin.process.pid, "admin")
    background = wait_until_quiet(meter, durations.quiet_wait_s, QUIET_CORES, log)
    cases: dict[str, dict[str, Any]] = {}
    raw: dict[str, dict[str, Any]] = {}
    cpu: dict[str, dict[str, object]] = {}
    try:
        before = meter.snapshot()
        for group_by in GROUP_BYS:  # no rollups yet: every figure from the raw rows
            path = f"/admin/v1/apps/{APP_ID}/report?group_by={group_by}"
            raw[f"7d {group_by}"] = result = measure(base, path, durations)
            log(f"  raw rows, 7d group_by={group_by}: p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms "
                f"({result['requests']} requests)")
        cpu["raw 7d"] = meter.usage(before, meter.snapshot())
        rollup_s, rolled = roll_up(database)
        log(f"  apprefer db rollup: {rolled['app_days']} app-days, {rolled['rows']} rows in {rollup_s} s")
        for label, days in RANGES:
            before = meter.snapshot()
            # The 30- and 90-day ranges end now; the default one (no from/to) ends at the end of today.
            window = "" if days is None else f"&from={now_ms - days * DAY_MS}&to={now_ms}"
            for group_by in GROUP_BYS:
                path = f"/admin/v1/apps/{APP_ID}/report?group_by={group_by}{window}"
                cases[f"{label} {group_by}"] = result = measure(base, path, durations)
                log(f"  {label} group_by={group_by}: p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms "
                    f"({result['requests']} requests)")
            if days is None:
                path = f"/admin/v1/apps/{APP_ID}/report?group_by=day&format=csv"
                cases[f"{label} day csv"] = result = measure(base, path, durations)
                log(f"  {label} group_by=day format=csv: p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms")
            cpu[label] = meter.usage(before, meter.snapshot())
        admin.assert_alive()
    finally:
        admin.terminate()
    raw_p95 = max(raw[f"7d {g}"]["p95_ms"] for g in GROUP_BYS)
    default_p95 = max(cases[f"7d {g}"]["p95_ms"] for g in GROUP_BYS)
    return {
        "report_p95_ms": default_p95,
        "report_raw_p95_ms": raw_p95,
        # the 7-day default's answer time from raw rows over that with rollups: mean p50 of the four group_bys
        "report_raw_over_rolled": round(sum(raw[f"7d {g}"]["p50_ms"] for g in GROUP_BYS)
                                        / sum(cases[f"7d {g}"]["p50_ms"] for g in GROUP_BYS), 2),
        "report_rollup_s": rollup_s,
        "report_30d_p95_ms": max(cases[f"30d {g}"]["p95_ms"] for g in GROUP_BYS),
        "report_90d_p95_ms": max(cases[f"90d {g}"]["p95_ms"] for g in GROUP_BYS),
        "details": {
            "rows": {"installs": INSTALLS, "audit_log": AUDIT_ROWS, "skan_postbacks": SKAN_POSTBACKS,
                     "days": DAYS},
            "setup_s": setup_s, "setup_steps_s": steps, "cases": cases, "raw_cases": raw, "rollup": rolled,
            "rounds_at_most": durations.rounds,
            "background_cores_before": background, "cpu": cpu,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        "profiles": {},
    }


def main() -> None:
    run_alone("python -m bench.report_bench", run_report_bench, ReportDurations(), QUICK)


if __name__ == "__main__":
    main()
