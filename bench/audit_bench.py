"""The audit writer's database work per audit row, with and without `audit_events` (the per-event summary the
report's conversions read, shared/reports/events.py): what that summary costs the pipeline.

In this process, against a migrated PostgreSQL: batches of 500 audit rows (250 new events, audited for two
networks each, as the forwarders' records arrive) written by `services/audit/consumer.py write_audit_rows`, each
batch one transaction, rounds alternating between the writer as it is and the writer with the summary left out.
The tables are ANALYZEd after the first rounds, as autovacuum does on a table that grows. `audit_us_per_row` is
the median of the rounds after the first two; `audit_events_cost_ratio` is it over the same without the summary.

`python -m bench.audit_bench` runs it alone against a throwaway PostgreSQL (`--quick`: fewer rounds).
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

import services.audit.consumer as consumer
from bench.infra import migrated_database, run_alone
from bench.machine import CpuMeter
from shared.db.session import make_engine, make_sessionmaker

EVENTS_PER_BATCH = 250
NETWORKS = ("meta", "tiktok")


@dataclass(frozen=True)
class AuditDurations:
    rounds: int = 12  # per mode
    batches: int = 10  # per round


QUICK = AuditDurations(rounds=4, batches=3)  # --quick: for trying the harness


def batch_rows(now_ms: int) -> list[dict[str, Any]]:
    rows = []
    for _ in range(EVENTS_PER_BATCH):
        event_id = uuid.uuid4().hex
        for network in NETWORKS:
            rows.append({"audit_id": uuid.uuid4().hex, "app_id": "app_audit_bench", "event_id": event_id,
                         "event_name": "purchase", "network": network, "status": "delivered", "attempts": 1,
                         "http_status": 200, "error_code": None, "detail": None, "latency_ms": 40,
                         "request_hash": None, "recorded_at_ms": now_ms})
    return rows


def run_audit_bench(pg_server: str, meter: CpuMeter, durations: AuditDurations,
                    log: Callable[[str], None]) -> dict[str, Any]:
    database = migrated_database(pg_server, "audit")
    engine = make_engine(database)
    sessions = make_sessionmaker(engine)
    writer = consumer.record_audit_events
    per_row: dict[str, list[float]] = {"with": [], "without": []}
    now_ms = int(time.time() * 1000)
    try:
        for round_ in range(durations.rounds):
            if round_ in (1, 4):  # what autovacuum's ANALYZE does as the tables grow
                with engine.connect() as connection:
                    connection.execute(text("ANALYZE audit_events"))
                    connection.execute(text("ANALYZE audit_log"))
                    connection.commit()
            for mode in ("with", "without"):
                consumer.record_audit_events = writer if mode == "with" else (lambda *_args, **_kwargs: 0)
                batches = [batch_rows(now_ms) for _ in range(durations.batches)]
                began = time.perf_counter()
                for rows in batches:
                    with sessions.begin() as session:
                        consumer.write_audit_rows(session, rows)
                per_row[mode].append((time.perf_counter() - began) / (durations.batches * len(batches[0])) * 1e6)
    finally:
        consumer.record_audit_events = writer
        engine.dispose()
    settled = {mode: statistics.median(values[2:] or values) for mode, values in per_row.items()}
    log(f"audit writer: {settled['with']:.1f} µs per audit row, {settled['without']:.1f} without audit_events")
    return {
        "audit_us_per_row": round(settled["with"], 1),
        "audit_events_cost_ratio": round(settled["with"] / settled["without"], 2),
        "details": {"us_per_row_by_round": {mode: [round(v, 1) for v in values] for mode, values in per_row.items()},
                    "rows_per_batch": EVENTS_PER_BATCH * len(NETWORKS), "batches_per_round": durations.batches},
        "profiles": {},
    }


def main() -> None:
    run_alone("python -m bench.audit_bench", run_audit_bench, AuditDurations(), QUICK)


if __name__ == "__main__":
    main()
