"""Gateway throughput and latency under wrk, beside a bare aiohttp app under the same load.

1. bare, naive and single, alternated (two rounds each, so a passing disturbance hits all):
   `POST /v1/events` with one purchase event per request, as fast as each server answers, same wrk
   settings (`bench/bare_gateway.py` describes the two references);
2. the real gateway again, paced at half the single rate it just reached: p99 latency;
3. the real gateway with 100 events per request: events per second;
4. (profiles) py-spy on the gateway under the single and the batch load.

The real gateway runs as `apprefer run gateway` with a fresh Tansu broker and PostgreSQL; every 202 it
answers means the broker acknowledged the records (acks=all, idempotent producer).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.infra import broker_pid, broker_with_topics, child, create_app, migrated_database, services
from bench.machine import CpuMeter, cores_by_thread, thread_ticks
from bench.profiling import Recording
from bench.wrk import WrkResult, run_wrk

CONNECTIONS = 32  # where both servers peaked on the 2-core machine (16, 32, 64 tried)
BATCH_CONNECTIONS = 8
BATCH_SIZE = 100


@dataclass(frozen=True)
class GatewayDurations:
    measure: float = 8.0  # per round; two rounds each for bare and single
    warmup: float = 2.0
    half_load: float = 10.0
    batch: float = 10.0
    profile: int = 10


def run_gateway_bench(pg_server: str, meter: CpuMeter, durations: GatewayDurations, profile: bool,
                      log: Callable[[str], None]) -> dict[str, Any]:
    database = migrated_database(pg_server, "gateway")
    with broker_with_topics() as broker, services(broker.bootstrap, database) as running, \
            child("bench.bare_gateway") as bare, child("bench.bare_gateway", "--produce", broker.bootstrap) as naive:
        meter.label(broker_pid(broker), "broker (Tansu)")
        meter.label(bare.pid, "bare aiohttp app")
        meter.label(naive.pid, "naive durable app")
        gateway, base, admin = running.start_edge()
        meter.label(gateway.process.pid if gateway.process else 0, "gateway")
        key = create_app(admin)["live_key"]
        running.stop({"admin"})  # the setup's only: not in the measured machine
        bare_url, gateway_url = f"{bare.base_url}/v1/events", f"{base}/v1/events"
        naive_url = f"{naive.base_url}/v1/events"
        pid_by_url = {bare_url: bare.pid, naive_url: naive.pid}

        gateway_pid = gateway.process.pid if gateway.process else 0

        def load(url: str, run: str, seconds: float, per_request: int = 1, rate: float = 0.0,
                 connections: int = CONNECTIONS) -> tuple[WrkResult, dict[str, object]]:
            server = pid_by_url.get(url, gateway_pid)
            before, threads_before = meter.snapshot(), thread_ticks(server)
            result = run_wrk(url, key=key, events_per_request=per_request, seconds=seconds,
                             connections=connections, rate=rate, run=run)
            after, threads_after = meter.snapshot(), thread_ticks(server)
            usage = meter.usage(before, after)
            usage["server_threads"] = cores_by_thread(server, threads_before, threads_after, after.at - before.at)
            log(f"  {run}: {result.rps:,.0f} req/s, p99 {result.p99_ms:.1f} ms, failed {result.failed}, "
                f"busy {usage['machine_busy']:.0%}")
            return result, usage

        log("gateway: warm-up")
        urls = {"bare": bare_url, "naive": naive_url, "single": gateway_url}
        for name, url in urls.items():
            load(url, f"warm-{name}", durations.warmup)
        rounds: dict[str, list[tuple[WrkResult, dict[str, object]]]] = {name: [] for name in urls}
        for n in (1, 2):
            for name, url in urls.items():
                rounds[name].append(load(url, f"{name}{n}", durations.measure))
        bare_rps = statistics.mean(r.rps for r, _ in rounds["bare"])
        naive_rps = statistics.mean(r.rps for r, _ in rounds["naive"])
        single_rps = statistics.mean(r.rps for r, _ in rounds["single"])
        half, half_usage = load(gateway_url, "half", durations.half_load, rate=single_rps / 2)
        load(gateway_url, "warm-batch", durations.warmup, per_request=BATCH_SIZE, connections=BATCH_CONNECTIONS)
        batch, batch_usage = load(gateway_url, "batch", durations.batch, per_request=BATCH_SIZE,
                                  connections=BATCH_CONNECTIONS)
        running.assert_alive()

        profiles = {}
        if profile and gateway.process is not None:
            for name, per_request, connections in (("gateway-single", 1, CONNECTIONS),
                                                   ("gateway-batch", BATCH_SIZE, BATCH_CONNECTIONS)):
                log(f"gateway: profiling ({name})")
                recording = Recording(name, gateway.process.pid, durations.profile, delay=1.0)
                load(gateway_url, f"profile-{name}", durations.profile + 2, per_request=per_request,
                     connections=connections)
                profiles[name] = recording.wait().as_dict()

    return {
        "gateway_bare_rps": round(bare_rps),
        "gateway_single_rps": round(single_rps),
        "gateway_single_ratio": round(single_rps / bare_rps, 3),
        "gateway_single_p99_ms": round(half.p99_ms, 1),
        "gateway_batch_events_per_s": round(batch.rps * BATCH_SIZE),
        "details": {
            "wrk": {"threads": 1, "connections": CONNECTIONS, "batch_connections": BATCH_CONNECTIONS,
                    "seconds_per_round": durations.measure},
            "naive_rps": round(naive_rps),
            "single_over_naive": round(single_rps / naive_rps, 3),
            "bare_rounds": [r.as_dict() for r, _ in rounds["bare"]],
            "naive_rounds": [r.as_dict() for r, _ in rounds["naive"]],
            "single_rounds": [r.as_dict() for r, _ in rounds["single"]],
            "half_load": {**half.as_dict(), "offered_rps": round(single_rps / 2)},
            "batch": {**batch.as_dict(), "events_per_request": BATCH_SIZE},
            "cpu": {"bare": rounds["bare"][-1][1], "naive": rounds["naive"][-1][1], "single": rounds["single"][-1][1],
                    "half_load": half_usage, "batch": batch_usage},
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        "profiles": profiles,
    }
