"""Forwarding: 200 apps' conversions to a fake Meta that answers after 0 or 100 ms, then with one app hung.

    job producer (this process, open loop) ─► forward.meta ─► forwarder (meta) ─► fake Meta (own process)
                                                                  ├─► forward.meta.retry (parked, retried)
                                                                  └─► audit.records (read back at the end)

Only the forwarder runs. The jobs are what fanout would produce for attributed purchases
(`services/fanout/consumer.py` `forward_job`: an fbclid, a GAID, a hashed email, revenue), encoded with
shared/avro.py and produced by a plain producer at a fixed rate, round robin over the apps, so that what is
measured is the forwarder. The 200 apps and their Meta integrations (datasets `bench-ds-000` ...
`bench-ds-199`: each app its own endpoint path on the fake) are created through the admin API of a gateway
that is stopped before anything is measured. Each event id carries its app's number and the time its job
was produced (epoch ms); the fake notes when each event's request arrived (bench/fake_meta.py), so every
job's delivery latency is known, on this machine's one clock.

Phases, one forwarder process with the product's defaults, the same offered load in each:
1. warm-up until every job arrived (consumer group joined, 200 integrations cached);
2. the fake answering at once: jobs delivered per second over the last `measured` of `skip + measured` s;
3. the fake answering after 100 ms: the same; forward_latency_ratio = 3. / 2.;
4. still 100 ms, and one app's dataset hung from the phase's start (its requests held, never answered) for
   `isolation` s: forward_isolation_p99_s = p99 delivery latency of the other 199 apps' jobs produced then.
   How the hung app's jobs fared comes from audit.records and forward.meta.retry, read back afterwards, and
   from the forwarder's /metrics, sampled every second (requests left in flight, breakers open).
Each phase but the warm-up is drained (every job of the healthy apps arrived) before the next one starts.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from bench.e2e_bench import fake_meta_stats, percentile
from bench.infra import broker_pid, broker_with_topics, child, create_app, migrated_database, services
from bench.machine import CpuMeter
from shared.avro import codec
from shared.kafka.topics import AUDIT_RECORDS, dlq, forward_topic
from tests.support.ports import free_port

APPS = 200
# One purchase per app per second. A forwarder making one request at a time could not keep up at 100 ms:
# 10 requests/s, each carrying one app's jobs of a batch (a 500-job batch spans nearly all 200 apps), so
# about 25 jobs/s.
OFFERED_RATE = 200.0
LATENCY_S = 0.1
HUNG_APP = 0
TOPIC = forward_topic("meta")
_METRIC = re.compile(r'^apprefer_(forward_\w+(?<!_created)|records_processed_total'
                     r'|consumer_batch_seconds_(?:sum|count))\{([^}]*)\} ([0-9.e+-]+)$')


def dataset_id(app: int) -> str:
    return f"bench-ds-{app:03d}"


@dataclass(frozen=True)
class ForwardDurations:
    warmup: float = 5.0
    skip: float = 5.0  # the first seconds of a latency phase are not measured
    measured: float = 25.0
    # The hang phase, load and measurement from the moment the app hangs: long enough to hold the breaker's
    # opening (5 requests timed out, after 10 s each, one sent per batch: 17-24 s here) and 20 s with it open.
    isolation: float = 45.0
    drain_timeout: float = 60.0
    rate: float = OFFERED_RATE


def forward_job(app_id: str, event_id: str, now_ms: int) -> dict[str, Any]:
    """A Meta job for an attributed purchase, field for field what fanout's `forward_job` makes of one."""
    device_id = hashlib.sha256(event_id.encode()).hexdigest()[:32]
    return {
        "job_id": f"{event_id}:meta", "app_id": app_id, "network": "meta", "event_id": event_id,
        "event_name": "purchase", "network_event_name": "Purchase", "event_time_ms": now_ms, "sandbox": False,
        "click_id_type": "fbclid", "click_id": f"IwAR{device_id[:20]}", "click_time_ms": now_ms - 3_600_000,
        "device": {"device_id": device_id, "idfa": None, "gaid": f"{device_id[:8]}-0000-4000-8000-{device_id[8:20]}",
                   "ip": "203.0.113.7", "user_agent": "Mozilla/5.0 (Linux; Android 14; Pixel 8)", "os": "android",
                   "os_version": "14", "model": "Pixel 8", "locale": "en_US", "att_status": None,
                   "app_version": "3.2.1"},
        "user_hashes": {"em": hashlib.sha256(f"{device_id}@example.com".encode()).hexdigest(),
                        "external_id": hashlib.sha256(device_id.encode()).hexdigest()},
        "revenue_amount": 9.99, "revenue_currency": "USD", "properties_json": '{"sku":"gems_100"}',
        "attempt": 0, "first_attempt_ms": None,
    }


@dataclass
class Produced:
    """One phase's jobs: event ids `<prefix>-<app>-<seq>-<produced_ms>`, produced on a fixed schedule."""

    prefix: str
    jobs: list[tuple[str, int, int]] = field(default_factory=list)  # (event id, app number, produced ms)
    started_ms: int = 0
    ended_ms: int = 0
    late_s: float = 0.0  # summed lateness against the schedule (a busy machine delays the producer)
    not_acknowledged: int = 0


class JobProducer:
    """A plain producer of forward.meta records at a fixed rate, in a thread of its own per phase."""

    def __init__(self, bootstrap: str, app_ids: list[str]) -> None:
        self._producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all",
                                   "enable.idempotence": True, "log.connection.close": False})
        self._codec = codec()
        self._app_ids = app_ids
        self._failed = 0

    def _on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._failed += 1

    def produce(self, phase: Produced, rate: float, seconds: float) -> None:
        self._failed = 0
        started = time.monotonic()
        phase.started_ms = int(time.time() * 1000)
        for seq in range(int(rate * seconds)):
            wait = started + seq / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            else:
                phase.late_s -= wait
            app = seq % len(self._app_ids)
            now_ms = int(time.time() * 1000)
            event_id = f"{phase.prefix}-{app:03d}-{seq}-{now_ms}"
            job = forward_job(self._app_ids[app], event_id, now_ms)
            self._producer.produce(TOPIC, key=f"{job['app_id']}:{job['device']['device_id']}".encode(),
                                   value=self._codec.encode("apprefer.ForwardJob", job), on_delivery=self._on_delivery)
            self._producer.poll(0)
            phase.jobs.append((event_id, app, now_ms))
        self._producer.flush(30)
        phase.ended_ms = int(time.time() * 1000)
        phase.not_acknowledged = self._failed + len(self._producer)

    def close(self) -> None:
        """Before the broker goes: a producer left open logs its failed reconnections."""
        self._producer.close()

    def start(self, phase: Produced, rate: float, seconds: float) -> threading.Thread:
        thread = threading.Thread(target=self.produce, args=(phase, rate, seconds), name=f"produce-{phase.prefix}")
        thread.start()
        return thread


class Arrivals:
    """Every event the fake accepted, first copy kept: event id -> (received ms, answered ms)."""

    def __init__(self, fake_url: str) -> None:
        self._url = fake_url
        self._cursor = 0
        self.first: dict[str, tuple[int, int]] = {}
        self.duplicates: Counter[str] = Counter()  # by phase prefix
        self.dropped = 0

    def pull(self) -> None:
        with urllib.request.urlopen(f"{self._url}/bench/arrivals?after={self._cursor}", timeout=10) as response:
            page = orjson.loads(response.read())
        self._cursor = page["next"]
        self.dropped += page["dropped"]
        for event_id, _dataset, received_ms, answered_ms in page["rows"]:
            if event_id in self.first:
                self.duplicates[event_id.split("-", 1)[0]] += 1
            else:
                self.first[event_id] = (received_ms, answered_ms)

    def missing(self, jobs: list[tuple[str, int, int]]) -> int:
        return sum(event_id not in self.first for event_id, _, _ in jobs)


def fake_control(fake_url: str, **change: object) -> dict[str, Any]:
    request = urllib.request.Request(f"{fake_url}/bench/control", data=orjson.dumps(change), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        state: dict[str, Any] = orjson.loads(response.read())
        return state


def forwarder_metrics(port: int) -> dict[str, float]:
    """The forwarder's own counters and gauges, keyed `name{labels}` without the network/service labels."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    found: dict[str, float] = {}
    for line in text.splitlines():
        match = _METRIC.match(line)
        if match:
            labels = ",".join(label for label in match[2].split(",")
                              if not label.startswith(("network=", "service=")))
            found[f"{match[1]}{{{labels}}}" if labels else match[1]] = float(match[3])
    return found


def metric_deltas(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Counters as differences over a phase (gauges, whose names do not end in _total/_sum/_count, as they end)."""
    deltas = {}
    for key, value in after.items():
        counter = key.split("{", 1)[0].endswith(("_total", "_sum", "_count"))
        deltas[key] = round(value - before.get(key, 0.0), 3) if counter else value
    return deltas


def latency_summary(latencies_ms: list[float]) -> dict[str, float]:
    return {p: round(percentile(latencies_ms, q) / 1000, 3)
            for p, q in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))} if latencies_ms else {}


def read_topic(bootstrap: str, topic: str) -> list[Message]:
    """Every record of a topic up to its current end (partitions assigned, no consumer group)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-reader", "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        remaining = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in remaining])
        messages: list[Message] = []
        deadline = time.monotonic() + 60
        while remaining and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if message.error() is not None:
                    continue
                messages.append(message)
                offset = message.offset()
                if offset is not None and offset + 1 >= ends[message.partition() or 0]:
                    remaining.discard(message.partition() or 0)
        return messages
    finally:
        consumer.close()


class ForwardBench:
    def __init__(self, producer: JobProducer, arrivals: Arrivals, meter: CpuMeter, fake_url: str, metrics_port: int,
                 durations: ForwardDurations, check_alive: Callable[[], None], log: Callable[[str], None]) -> None:
        self.producer, self.arrivals, self.meter = producer, arrivals, meter
        self.fake_url, self.metrics_port = fake_url, metrics_port
        self.durations, self.check_alive, self.log = durations, check_alive, log

    def load(self, prefix: str, seconds: float, on_tick: Callable[[], None] | None = None) -> Produced:
        """Produces `seconds` of the offered load, pulling arrivals (and calling `on_tick`) every half second."""
        phase = Produced(prefix)
        thread = self.producer.start(phase, self.durations.rate, seconds)
        while thread.is_alive():
            thread.join(0.5)
            self.arrivals.pull()
            if on_tick is not None:
                on_tick()
        self.check_alive()
        return phase

    def drain(self, jobs: list[tuple[str, int, int]]) -> bool:
        deadline = time.monotonic() + self.durations.drain_timeout
        while True:
            self.arrivals.pull()
            if not self.arrivals.missing(jobs):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)

    def latencies_ms(self, jobs: list[tuple[str, int, int]], drained_at_ms: int) -> list[float]:
        """Produced -> request received by the fake; a job that never arrived counts as late as the drain's end
        (a lower bound, and `missing` says how many)."""
        return [float(self.arrivals.first.get(event_id, (drained_at_ms, 0))[0] - produced_ms)
                for event_id, _, produced_ms in jobs]

    def warm_up(self) -> None:
        self.log(f"forward: warm-up at {self.durations.rate:,.0f} jobs/s until every job reached the fake")
        phase = self.load("warm", self.durations.warmup)
        if not self.drain(phase.jobs):
            missing = self.arrivals.missing(phase.jobs)
            raise RuntimeError(f"warm-up jobs not delivered within {self.durations.drain_timeout:g} s "
                               f"({missing} of {len(phase.jobs)} missing); see bench/out/logs")

    def latency_phase(self, prefix: str, latency_s: float) -> dict[str, Any]:
        fake_control(self.fake_url, latency=latency_s)
        requests_before = fake_meta_stats(self.fake_url)["requests"]
        before, metrics_before = self.meter.snapshot(), forwarder_metrics(self.metrics_port)
        phase = self.load(prefix, self.durations.skip + self.durations.measured)
        after, metrics_after = self.meter.snapshot(), forwarder_metrics(self.metrics_port)
        requests_per_s = (fake_meta_stats(self.fake_url)["requests"] - requests_before) / (after.at - before.at)
        from_ms = phase.started_ms + int(self.durations.skip * 1000)
        to_ms = from_ms + int(self.durations.measured * 1000)
        drained = self.drain(phase.jobs)
        drained_at_ms = int(time.time() * 1000)
        received = [self.arrivals.first[e][0] for e, _, _ in phase.jobs if e in self.arrivals.first]
        delivered_per_s = sum(from_ms <= r < to_ms for r in received) / self.durations.measured
        measured = [job for job in phase.jobs if from_ms <= job[2] < to_ms]
        latency = latency_summary(self.latencies_ms(measured, drained_at_ms))
        batches = self.batch_figures(metric_deltas(metrics_before, metrics_after), after.at - before.at)
        cpu = self.meter.usage(before, after)
        self.log(f"  fake answering after {latency_s * 1000:.0f} ms: offered {self.durations.rate:,.0f} jobs/s, "
                 f"delivered {delivered_per_s:,.1f}/s in {requests_per_s:,.0f} requests/s, "
                 f"p99 {latency.get('p99', float('nan')):.2f} s, "
                 f"mean batch {batches['mean_batch_records']:.0f} jobs in {batches['mean_batch_s']:.2f} s, "
                 f"busy {cpu['machine_busy']:.0%}")
        return {
            "fake_latency_s": latency_s, "offered_jobs_per_s": self.durations.rate,
            "delivered_per_s": round(delivered_per_s, 1), "measured_seconds": self.durations.measured,
            "jobs": len(phase.jobs), "drained": drained, "missing_after_drain": self.arrivals.missing(phase.jobs),
            "duplicates": self.arrivals.duplicates[prefix],
            "producer_late_ms_per_job": round(phase.late_s * 1000 / max(len(phase.jobs), 1), 2),
            "producer_not_acknowledged": phase.not_acknowledged,
            "latency_to_fake_s": latency,
            "fake_requests_per_s": round(requests_per_s, 1),  # answered event requests, over the whole phase
            "forwarder": batches, "cpu": cpu,
        }

    @staticmethod
    def batch_figures(deltas: dict[str, float], seconds: float) -> dict[str, Any]:
        batches = deltas.get("consumer_batch_seconds_count", 0.0)
        records = sum(v for k, v in deltas.items() if k.startswith("records_processed_total"))
        return {
            "batches": int(batches),
            "mean_batch_records": round(records / batches, 1) if batches else 0.0,
            "mean_batch_s": round(deltas.get("consumer_batch_seconds_sum", 0.0) / batches, 3) if batches else 0.0,
            "busy": round(deltas.get("consumer_batch_seconds_sum", 0.0) / seconds, 2),
            "metrics": {k: v for k, v in deltas.items() if not k.startswith("consumer_batch")},
        }

    def isolation_phase(self, hung_dataset: str) -> dict[str, Any]:
        fake_control(self.fake_url, latency=LATENCY_S, hang=[hung_dataset])
        hung_at = time.monotonic()
        timeline: list[dict[str, float]] = []
        last_sample = [0.0]

        def sample() -> None:
            now = time.monotonic()
            if now - last_sample[0] >= 1.0:
                last_sample[0] = now
                metrics = forwarder_metrics(self.metrics_port)
                timeline.append({"s": round(now - hung_at, 1),
                                 "late_requests": metrics.get("forward_late_requests", 0.0),
                                 "breakers_open": metrics.get("forward_breakers_open", 0.0)})

        before, metrics_before = self.meter.snapshot(), forwarder_metrics(self.metrics_port)
        phase = self.load("iso", self.durations.isolation, on_tick=sample)
        after, metrics_after = self.meter.snapshot(), forwarder_metrics(self.metrics_port)
        healthy = [job for job in phase.jobs if job[1] != HUNG_APP]
        hung = [job for job in phase.jobs if job[1] == HUNG_APP]
        drained = self.drain(healthy)
        drained_at_ms = int(time.time() * 1000)
        latencies = self.latencies_ms(healthy, drained_at_ms)
        # p99 per 5 s of production: when, after the hang, the other apps' jobs were slowed.
        buckets: dict[int, list[float]] = defaultdict(list)
        for (_, _, produced_ms), latency in zip(healthy, latencies, strict=True):
            buckets[(produced_ms - phase.started_ms) // 5000 * 5].append(latency)
        summary = latency_summary(latencies)
        by_5s = {f"{start}-{start + 5}": round(percentile(values, 99) / 1000, 3)
                 for start, values in sorted(buckets.items())}
        self.log(f"  {hung_dataset} hung: other apps' p99 {summary.get('p99', float('nan')):.2f} s over "
                 f"{self.durations.isolation:g} s; p99 per 5 s: " + ", ".join(f"{v:.2f}" for v in by_5s.values()))
        return {
            "fake_latency_s": LATENCY_S, "hung_dataset": hung_dataset, "window_seconds": self.durations.isolation,
            "offered_jobs_per_s": self.durations.rate, "other_apps_jobs": len(healthy), "drained": drained,
            "other_apps_missing_after_drain": self.arrivals.missing(healthy),
            "duplicates": self.arrivals.duplicates["iso"],
            "other_apps_latency_to_fake_s": summary, "other_apps_p99_s_by_5s_after_hang": by_5s,
            "hung_app_jobs": len(hung),
            "hung_app_jobs_received_by_fake": len(hung) - self.arrivals.missing(hung),
            "forwarder": self.batch_figures(metric_deltas(metrics_before, metrics_after), after.at - before.at),
            "breaker_open_after_s": next((t["s"] for t in timeline if t["breakers_open"] >= 1), None),
            "forwarder_timeline": timeline,
            "cpu": self.meter.usage(before, after),
        }


def wait_until_settled(metrics_port: int, timeout: float = 15.0) -> None:
    """Until the forwarder's counters stop moving: the fake has every job before the forwarder has produced
    the audit records of the last batch."""
    deadline = time.monotonic() + timeout
    seen = forwarder_metrics(metrics_port)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = forwarder_metrics(metrics_port)
        if now == seen:
            return
        seen = now


def audit_outcomes(bootstrap: str, hung_app_id: str) -> dict[str, Any]:
    """What the forwarder reported for each phase: audit statuses (and error codes) for the hung app and the
    others, the retry topic's records per attempt, the dead-letter topic's size."""
    records = codec()
    by_phase: dict[str, Counter[str]] = defaultdict(Counter)
    for message in read_topic(bootstrap, AUDIT_RECORDS):
        _, audit = records.decode(message.value() or b"")
        who = "hung_app" if audit["app_id"] == hung_app_id else "other_apps"
        code = f"/{audit['error_code']}" if audit["error_code"] else ""
        by_phase[f"{audit['event_id'].split('-', 1)[0]} {who}"][f"{audit['status']}{code}"] += 1
    retries: Counter[str] = Counter()
    for message in read_topic(bootstrap, f"{TOPIC}.retry"):
        _, job = records.decode(message.value() or b"")
        who = "hung_app" if job["app_id"] == hung_app_id else "other_apps"
        retries[f"{job['event_id'].split('-', 1)[0]} {who} attempt {job['attempt']}"] += 1
    return {"audit": {key: dict(counts) for key, counts in sorted(by_phase.items())},
            "retry_topic": dict(sorted(retries.items())),
            "dlq_records": len(read_topic(bootstrap, dlq(TOPIC)))}


def run_forward_bench(pg_server: str, meter: CpuMeter, durations: ForwardDurations,
                      log: Callable[[str], None]) -> dict[str, Any]:
    database = migrated_database(pg_server, "forward")
    with broker_with_topics() as broker, child("bench.fake_meta", "--any-dataset") as meta, \
            services(broker.bootstrap, database, APPREFER_META_BASE_URL=meta.base_url) as running:
        meter.label(broker_pid(broker), "broker (Tansu)")
        meter.label(meta.pid, "fake Meta")
        log(f"forward: {APPS} apps with a Meta integration each, through the admin API")
        _, admin = running.start_admin()  # no gateway: the jobs are produced straight onto forward.meta
        app_ids = [create_app(admin, meta.base_url, dataset_id(app))["app_id"] for app in range(APPS)]
        running.stop({"admin"})
        metrics_port = free_port()
        forwarder = running.start("forwarder meta", ["run", "forwarder", "--network", "meta"],
                                  APPREFER_METRICS_PORT=str(metrics_port))
        assert forwarder.process is not None
        meter.label(forwarder.process.pid, "forwarder meta")
        producer = JobProducer(broker.bootstrap, app_ids)
        bench = ForwardBench(producer, Arrivals(meta.base_url), meter, meta.base_url, metrics_port, durations,
                             running.assert_alive, log)
        try:
            bench.warm_up()
            at_0 = bench.latency_phase("lat0", 0.0)
            at_100 = bench.latency_phase("lat100", LATENCY_S)
            isolation = bench.isolation_phase(dataset_id(HUNG_APP))
        finally:
            producer.close()
        wait_until_settled(metrics_port)
        outcomes = audit_outcomes(broker.bootstrap, app_ids[HUNG_APP])
        running.assert_alive()

    ratio = at_100["delivered_per_s"] / max(at_0["delivered_per_s"], 1e-9)
    return {
        "forward_latency_ratio": round(ratio, 3),
        "forward_isolation_p99_s": isolation["other_apps_latency_to_fake_s"].get("p99", float("nan")),
        "details": {
            "apps": APPS, "offered_jobs_per_s": durations.rate, "at_0ms": at_0, "at_100ms": at_100,
            "isolation": isolation, "outcomes": outcomes, "fake_arrivals_dropped": bench.arrivals.dropped,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        "profiles": {},
    }
