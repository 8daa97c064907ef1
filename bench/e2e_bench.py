"""End to end: SDK events in at the gateway, audit rows out in PostgreSQL, through every stage.

    load generator ─► gateway ─► events.raw ─► attribution ─► events.attributed ─► fanout ─► forward.meta
        ─► forwarder (meta) ─► fake Meta (own process) ─► audit.records ─► audit writer ─► audit_log

Every event is forwarded: installs carry an fbclid in their Play referrer, so the device is attributed to
Meta, and the app's Meta integration maps install to MobileAppInstall (purchase is Purchase by default).
Each event ends as exactly one `delivered` audit row, which bench/audit_watch.py times.

Per consumer count (one process of each consumer, then two):
1. warm-up at a low rate until everything sent is audited (consumer groups joined, caches filled);
2. capacity probe, closed loop: a bounded number of events sent and not yet audited (MIN_WINDOW, raised
   to WINDOW_SECONDS of the rate seen after `skip` s), for `probe` seconds; capacity = audit rows per
   second after the first `skip` seconds;
then, with one process of each:
3. steady run, open loop at 80 % of that capacity for `skip` + `steady_measured` s: audit rows per second,
   and the latency (send -> audit row visible) of every event sent after the first `skip` s; when the
   pipeline falls behind at that rate (audits under 90 % of it, or a backlog left), once more at 50 %;
4. (profiles) py-spy on the gateway and each consumer under the closed-loop load.
Each consumer serves /metrics: per phase, the bench reads how many records each stage processed and how
much of the phase it spent inside batches (busy 1.0 = never waiting for input: the bottleneck).
"""

from __future__ import annotations

import math
import os
import re
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from bench import loadgen
from bench.audit_watch import AuditWatcher
from bench.infra import (
    Services,
    broker_pid,
    broker_with_topics,
    child,
    create_app,
    migrated_database,
    psycopg_url,
    services,
)
from bench.machine import CpuMeter
from bench.profiling import Recording
from tests.support.ports import free_port

CONSUMERS = (
    ("attribution", ["run", "attribution"]),
    ("fanout", ["run", "fanout"]),
    ("forwarder meta", ["run", "forwarder", "--network", "meta"]),
    ("audit", ["run", "audit"]),
)
MIN_WINDOW = 2_000  # four stages with 500-record batches: each can hold a full batch
WINDOW_SECONDS = 2.0
# The steady run's rate, as fractions of the probed capacity: the second only when the first fell behind.
STEADY_FRACTIONS = (0.8, 0.5)
TARGET_SCALE = 1.7  # consumers_scale_2_over_1 target
KEPT_UP = 0.9  # audited at least this share of the offered rate, and the backlog cleared afterwards
WARMUP_RATE = 100.0
_METRIC = re.compile(r'^apprefer_(records_processed_total|consumer_batch_seconds_(?:sum|count))\{service="([^"]+)"'
                     r'.*\} ([0-9.e+]+)$')


@dataclass(frozen=True)
class E2EDurations:
    warmup: float = 5.0
    probe: float = 20.0
    skip: float = 5.0  # the first seconds of a probe or steady run are not measured
    steady_measured: float = 30.0
    profile: int = 10
    drain_timeout: float = 60.0


@dataclass
class Phase:
    prefix: str
    started_ms: int
    ended_ms: int
    accepted: int
    failed: int
    late_ms_per_request: float
    cpu: dict[str, object]
    stages: dict[str, dict[str, float]]


def kept_up(steady: dict[str, Any]) -> bool:
    return bool(steady["drained"]) and steady["events_per_s"] >= KEPT_UP * steady["offered_events_per_s"]


def percentile(values: list[float], pct: float) -> float:
    """Nearest rank: the smallest value at or above which `pct` % of the values lie."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


class Pipeline:
    def __init__(self, running: Services, watcher: AuditWatcher, meter: CpuMeter, url: str, key: str,
                 log: Callable[[str], None]) -> None:
        self.running, self.watcher, self.meter = running, watcher, meter
        self.url, self.key, self.log = url, key, log
        self.metrics_ports: list[int] = []

    # --- consumers ------------------------------------------------------------------------------

    def start_consumers(self, copies: int) -> None:
        self.metrics_ports = []
        for label, args in CONSUMERS:
            for _ in range(copies):
                port = free_port()
                process = self.running.start(label, args, APPREFER_METRICS_PORT=str(port))
                assert process.process is not None
                self.meter.label(process.process.pid, label)
                self.metrics_ports.append(port)

    def stop_consumers(self) -> None:
        self.running.stop({label for label, _ in CONSUMERS})

    def consumer_pids(self) -> dict[str, int]:
        """The first process of each consumer (the one profiled)."""
        pids: dict[str, int] = {}
        for label, pid in self.running.pids():
            pids.setdefault(label, pid)
        return pids

    def stage_counters(self) -> dict[str, dict[str, float]]:
        """Per service, summed over its processes: records processed, batches, seconds inside batches."""
        totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for port in self.metrics_ports:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                    text = response.read().decode()
            except OSError:
                continue
            for line in text.splitlines():
                match = _METRIC.match(line)
                if match:
                    totals[match[2]][match[1]] += float(match[3])
        return {service: dict(values) for service, values in totals.items()}

    @staticmethod
    def stage_rates(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], seconds: float,
                    processes: int) -> dict[str, dict[str, float]]:
        rates = {}
        for service, values in after.items():
            old = before.get(service, {})

            def delta(name: str, values: dict[str, float] = values, old: dict[str, float] = old) -> float:
                return values.get(name, 0.0) - old.get(name, 0.0)

            batches = delta("consumer_batch_seconds_count")
            rates[service] = {
                "records_per_s": round(delta("records_processed_total") / seconds, 1),
                "mean_batch_records": round(delta("records_processed_total") / batches, 1) if batches else 0.0,
                "mean_batch_s": round(delta("consumer_batch_seconds_sum") / batches, 3) if batches else 0.0,
                # Fraction of the phase each process spent inside batches (1.0: never idle).
                "busy": round(delta("consumer_batch_seconds_sum") / seconds / processes, 2),
            }
        return rates

    # --- load -----------------------------------------------------------------------------------

    def load(self, prefix: str, seconds: float, *, rate: float | None = None, processes: int = 1,
             adapt_window_after: float | None = None) -> Phase:
        """Runs the load generator; closed loop when `rate` is None (window adapted after the given s)."""
        counters = loadgen.Counters.create(window=MIN_WINDOW)
        self.watcher.publish_count(prefix, counters.audited)
        plan = loadgen.LoadPlan(url=self.url, key=self.key, prefix=prefix, seconds=seconds, rate=rate)
        before, stages_before = self.meter.snapshot(), self.stage_counters()
        process = loadgen.start(plan, counters)
        self.meter.label(process.pid or 0, "load generator")
        if adapt_window_after is not None:
            time.sleep(adapt_window_after)
            recent = self.rate_between(prefix, int(time.time() * 1000) - 3000, int(time.time() * 1000))
            counters.window.value = max(MIN_WINDOW, int(recent * WINDOW_SECONDS))
        process.join(timeout=seconds + 60)
        after = self.meter.snapshot()
        usage = self.meter.usage(before, after)
        stages = self.stage_rates(stages_before, self.stage_counters(), after.at - before.at, processes)
        if process.exitcode != 0:
            raise RuntimeError(f"load generator for {prefix} exited with {process.exitcode}")
        requests = max(counters.issued.value // loadgen.EVENTS_PER_REQUEST, 1)
        self.running.assert_alive()
        return Phase(prefix, counters.started_ms.value, counters.ended_ms.value, counters.accepted.value,
                     counters.failed.value, counters.late_ms.value / requests, usage, stages)

    def drain(self, phase: Phase, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.watcher.delivered_count(phase.prefix) < phase.accepted:
            if self.watcher.error is not None:
                raise RuntimeError(f"audit watcher failed: {self.watcher.error}")
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True

    def rate_between(self, prefix: str, from_ms: int, to_ms: int) -> float:
        rows = self.watcher.rows(prefix).delivered
        return sum(from_ms <= r.seen_ms < to_ms for r in rows) / max((to_ms - from_ms) / 1000, 1e-3)

    # --- phases ---------------------------------------------------------------------------------

    def warm_up(self, prefix: str, durations: E2EDurations) -> None:
        self.log(f"e2e: warm-up ({prefix}) until every event is audited")
        phase = self.load(prefix, durations.warmup, rate=WARMUP_RATE)
        if not self.drain(phase, timeout=120):
            raise RuntimeError(f"warm-up events not audited within 120 s "
                               f"({self.watcher.delivered_count(prefix)} of {phase.accepted}); see bench/out/logs")

    def probe(self, prefix: str, durations: E2EDurations, processes: int, drain: bool = True) -> dict[str, Any]:
        """Closed-loop capacity; `drain` waits for the backlog to clear (for a phase that follows)."""
        phase = self.load(prefix, durations.probe, processes=processes, adapt_window_after=durations.skip)
        capacity = self.rate_between(prefix, phase.started_ms + int(durations.skip * 1000), phase.ended_ms)
        drained = self.drain(phase, durations.drain_timeout) if drain else None
        self.log(f"  {prefix}: {capacity:,.0f} events/s audited (closed loop), "
                 f"busy {phase.cpu['machine_busy']:.0%}, stages busy "
                 + ", ".join(f"{s} {v['busy']:.2f}" for s, v in phase.stages.items()))
        return {"events_per_s": round(capacity), "accepted": phase.accepted, "failed": phase.failed,
                "drained": drained, "stages": phase.stages, "cpu": phase.cpu}

    def steady(self, prefix: str, rate: float, durations: E2EDurations) -> dict[str, Any]:
        seconds = durations.skip + durations.steady_measured
        phase = self.load(prefix, seconds, rate=rate)
        from_ms = phase.started_ms + int(durations.skip * 1000)
        to_ms = from_ms + int(durations.steady_measured * 1000)
        throughput = self.rate_between(prefix, from_ms, to_ms)
        drained = self.drain(phase, durations.drain_timeout)
        rows = self.watcher.rows(prefix)
        measured = [r for r in rows.delivered if from_ms <= r.send_ms < to_ms]
        to_row = [(r.seen_ms - r.send_ms) / 1000 for r in measured]
        to_record = [(r.recorded_ms - r.send_ms) / 1000 for r in measured]
        self.log(f"  {prefix}: offered {rate:,.0f} events/s, audited {throughput:,.0f}/s, "
                 f"p99 {percentile(to_row, 99):.2f} s, busy {phase.cpu['machine_busy']:.0%}")
        return {
            "offered_events_per_s": round(rate), "events_per_s": round(throughput),
            "measured_seconds": durations.steady_measured, "events_measured": len(measured),
            "accepted": phase.accepted, "failed": phase.failed,
            "not_audited_after_drain": phase.accepted - self.watcher.delivered_count(prefix),
            "drained": drained, "other_audit_statuses": dict(rows.other_statuses),
            "schedule_slip_ms_per_request": round(phase.late_ms_per_request, 2),
            "latency_to_audit_row_s": {p: round(percentile(to_row, q), 3)
                                       for p, q in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))},
            "latency_to_audit_record_produced_s": {p: round(percentile(to_record, q), 3)
                                                   for p, q in (("p50", 50), ("p99", 99))},
            "stages": phase.stages, "cpu": phase.cpu,
        }

    def profile(self, gateway_pid: int, durations: E2EDurations) -> dict[str, Any]:
        self.log("e2e: profiling gateway and consumers under the closed-loop load")
        targets = {"e2e-gateway": gateway_pid, **{f"e2e-{label.replace(' ', '-')}": pid
                                                   for label, pid in self.consumer_pids().items()
                                                   if label != "gateway"}}
        recordings = [Recording(name, pid, durations.profile, delay=2.0) for name, pid in targets.items()]
        phase = self.load("prof1", durations.profile + 4, adapt_window_after=2.0)
        self.drain(phase, durations.drain_timeout)
        return {recording.name: recording.wait().as_dict() for recording in recordings}


def fake_meta_stats(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base_url}/bench/stats", timeout=10) as response:
        stats: dict[str, Any] = orjson.loads(response.read())
        return stats


def run_e2e_bench(pg_server: str, meter: CpuMeter, durations: E2EDurations, profile: bool,
                  log: Callable[[str], None]) -> dict[str, Any]:
    database = migrated_database(pg_server, "e2e")
    watcher = AuditWatcher(psycopg_url(database))
    watcher.start()
    try:
        with broker_with_topics() as broker, child("bench.fake_meta") as meta, \
                services(broker.bootstrap, database, APPREFER_META_BASE_URL=meta.base_url) as running:
            meter.label(broker_pid(broker), "broker (Tansu)")
            meter.label(meta.pid, "fake Meta")
            gateway, base, admin = running.start_edge()
            gateway_pid = gateway.process.pid if gateway.process else 0
            meter.label(gateway_pid, "gateway")
            key = create_app(admin, meta_base_url=meta.base_url)["live_key"]
            running.stop({"admin"})  # the setup's only: not in the measured machine, nor profiled
            pipeline = Pipeline(running, watcher, meter, f"{base}/v1/events", key, log)

            pipeline.start_consumers(1)
            pipeline.warm_up("warm1", durations)
            log("e2e: one process of each consumer")
            probe1 = pipeline.probe("probe1", durations, processes=1)
            steady_runs = [pipeline.steady("steady1", probe1["events_per_s"] * STEADY_FRACTIONS[0], durations)]
            if not kept_up(steady_runs[0]):
                log(f"  the pipeline did not keep up; again at {STEADY_FRACTIONS[1]:.0%} of the probed capacity")
                steady_runs.append(pipeline.steady("steady2", probe1["events_per_s"] * STEADY_FRACTIONS[1],
                                                   durations))
            steady1 = steady_runs[-1]
            profiles = pipeline.profile(gateway_pid, durations) if profile else {}

            pipeline.stop_consumers()
            pipeline.start_consumers(2)
            pipeline.warm_up("warm2", durations)
            log("e2e: two processes of each consumer")
            probe2 = pipeline.probe("probe2", durations, processes=2, drain=False)
            meta_stats = fake_meta_stats(meta.base_url)
    finally:
        watcher.stop()

    scale = probe2["events_per_s"] / max(probe1["events_per_s"], 1)
    busy_1x = float(probe1["cpu"]["machine_busy"])
    return {
        "e2e_events_per_s": steady1["events_per_s"],
        "e2e_p99_s": steady1["latency_to_audit_row_s"]["p99"],
        "consumers_scale_2_over_1": round(scale, 2),
        "details": {
            "capacity_1x": probe1, "steady_1x": steady1, "capacity_2x": probe2,
            "steady_attempts": [{k: run[k] for k in ("offered_events_per_s", "events_per_s", "drained")}
                                | {"p99_s": run["latency_to_audit_row_s"]["p99"]} for run in steady_runs],
            "steady_kept_up": kept_up(steady1),
            # Every process of the pipeline (consumers, gateway, broker, PostgreSQL, load) works in proportion
            # to the throughput, so TARGET_SCALE times the one-process throughput needs TARGET_SCALE times the
            # CPU the one-process probe used: more than the machine has means the machine, not the code, limits.
            "cores_needed_for_target_scale": round(TARGET_SCALE * busy_1x * (os.cpu_count() or 1), 2),
            "machine_limited": TARGET_SCALE * busy_1x > 1.0,
            "events_per_request": loadgen.EVENTS_PER_REQUEST,
            "fake_meta_accepted": meta_stats,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        "profiles": profiles,
    }
