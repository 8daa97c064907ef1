"""Chaos: events through every service while a killer SIGKILLs a random consumer every few seconds.

N events (APPREFER_CHAOS_EVENTS; 2,000 by default so CI stays quick, `make chaos` runs 20,000) go
gateway -> attribution -> fanout -> forwarders -> fake Meta / fake TikTok -> audit, on a real broker and a
real PostgreSQL, every service its own process. Half the devices install with an fbclid, half with a ttclid:
each purchase belongs to exactly one network (and a ttclid install also goes to TikTok, as InstallApp).
Meanwhile a seeded killer SIGKILLs one random consumer process (never the gateway: what it acknowledged is
already in Kafka) every 2-4 s and restarts it at once, until every event was sent and some seconds passed.

At the end: every conversion is at its network once as the network counts (unique event ids) and at no other
network, every event has its audit rows, and every dead-letter topic is empty. Raw re-sends (an event the fake
received more than once, which the network dedupes on event_id) are counted and printed, not failed.
Run with `-s` to see the figures (`make chaos` does).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from sqlalchemy import Engine, create_engine, func, select

from shared.db.models import AuditEntry
from shared.kafka.topics import all_topics, create_topics
from tests.fakes import FakeMeta, FakeTikTok, RecordedRequest
from tests.support.pipeline import ServiceProcess, http_call, service_env, start_edge

EVENTS = int(os.environ.get("APPREFER_CHAOS_EVENTS", "2000"))
SEED = int(os.environ.get("APPREFER_CHAOS_SEED", "20240607"))
KILL_AFTER_SEND_SECONDS = float(os.environ.get("APPREFER_CHAOS_KILL_SECONDS", "20"))  # kills go on this long
# Traffic is paced so that kills land while events flow through every stage, not after a burst has drained.
RATE = float(os.environ.get("APPREFER_CHAOS_RATE", "150"))  # events per second offered to the gateway
KILL_INTERVAL_SECONDS = (2.0, 4.0)
KILL_PHASE_MAX_SECONDS = 900.0  # a bound, whatever happens to the senders
DEVICES_PER_REQUEST = 50  # an install and a purchase each: 100 events per request (the gateway takes 500)
CLIENTS = 4
DRAIN_TIMEOUT_SECONDS = 180 + EVENTS / 40
PROGRESS_EVERY_SECONDS = 5.0

CONSUMERS: dict[str, list[str]] = {
    "attribution": ["run", "attribution"],
    "fanout": ["run", "fanout"],
    "audit": ["run", "audit"],
    "forwarder-meta": ["run", "forwarder", "--network", "meta"],
    "forwarder-tiktok": ["run", "forwarder", "--network", "tiktok"],
}
NAMED_DLQS = ("events.raw.dlq", "events.attributed.dlq", "audit.records.dlq", "forward.meta.dlq",
              "forward.tiktok.dlq")
LEDGER_SKIP = "already delivered (ledger)"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(int(600 + EVENTS / 10))]


# -- what is sent and what must come out ------------------------------------------------------------------------

@dataclass
class Plan:
    requests: list[list[dict[str, Any]]] = field(default_factory=list)  # each request's events
    meta: set[tuple[str, str]] = field(default_factory=set)  # (event_name, event_id) as Meta dedupes
    tiktok: set[tuple[str, str]] = field(default_factory=set)  # (event, event_id) as TikTok dedupes
    audit: set[tuple[str, str, str]] = field(default_factory=set)  # (event_id, network, status)

    @property
    def events(self) -> int:
        return sum(len(events) for events in self.requests)


def plan(count: int) -> Plan:
    """Device d: an install (fbclid for even d, ttclid for odd d), then a purchase, in the same request so the
    gateway produces them in order on the device's partition."""
    result = Plan()
    now = int(time.time())
    events: list[dict[str, Any]] = []
    for d in range(count // 2):
        network, other, click = (("meta", "tiktok", {"fbclid": f"IwAR-chaos-{d}"}) if d % 2 == 0
                                 else ("tiktok", "meta", {"ttclid": f"E.C.P.chaos-{d}"}))
        ip = f"10.{d >> 16 & 255}.{d >> 8 & 255}.{d & 255}"
        device = {"device_id": f"chaos-device-{d}", "os": "android", "ip": ip}
        install_id, purchase_id = f"chaos-install-{d}", f"chaos-purchase-{d}"
        events.append({"event_id": install_id, "event_name": "install", "event_time": now, "device": device,
                       "referrer": click})
        events.append({"event_id": purchase_id, "event_name": "purchase", "event_time": now, "device": device,
                       "revenue": {"amount": 4.99, "currency": "EUR"}})
        if len(events) == 2 * DEVICES_PER_REQUEST:
            result.requests.append(events)
            events = []
        # Fanout audits `skipped` where it makes no job; the forwarder audits `delivered`.
        result.audit |= {(purchase_id, network, "delivered"), (purchase_id, other, "skipped"),
                         (install_id, "meta", "skipped")}
        if network == "meta":
            result.meta.add(("Purchase", purchase_id))
            result.audit.add((install_id, "tiktok", "skipped"))
        else:
            result.tiktok |= {("Purchase", purchase_id), ("InstallApp", install_id)}
            result.audit.add((install_id, "tiktok", "delivered"))
    if events:
        result.requests.append(events)
    return result


# -- the consumer processes and the killer ----------------------------------------------------------------------

class Consumers:
    """The consumer processes by name; the killer swaps them under a lock."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self._env, self._log_dir = env, log_dir
        self._lock = threading.Lock()
        self._stopped = False
        self.kills: Counter[str] = Counter()
        self.unexpected_exits: list[str] = []
        self.killer_errors: list[Exception] = []
        self.processes = {name: self._start(name) for name in CONSUMERS}

    def _start(self, name: str) -> ServiceProcess:
        return ServiceProcess(CONSUMERS[name], self._env, self._log_dir).start()

    def kill_and_restart(self, name: str) -> None:
        with self._lock:
            if self._stopped:
                return
            self.processes[name].kill()  # SIGKILL, then reap
            self.kills[name] += 1
            self.processes[name] = self._start(name)

    def revive_crashed(self) -> None:
        """A consumer that exited by itself is a finding: recorded (with its log) and restarted."""
        with self._lock:
            if self._stopped:
                return
            for name, process in self.processes.items():
                assert process.process is not None
                if process.process.poll() is not None:
                    self.unexpected_exits.append(f"{name} exited with {process.process.returncode} "
                                                 f"({process.log_path}):\n{process.log_tail()}")
                    self.processes[name] = self._start(name)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            for process in self.processes.values():
                try:
                    process.terminate()
                except Exception:  # stuck: SIGKILL it, nothing else to save
                    process.kill()


def killer(consumers: Consumers, rng: random.Random, phase_over: Callable[[], bool], stop: threading.Event,
           started: float) -> None:
    """Victims are drawn in rounds, each a random permutation of the consumers: every five kills hit each
    consumer once, so a short run still kills all of them. A failure of the killer itself is kept for the test."""
    victims: list[str] = []
    try:
        while not stop.wait(rng.uniform(*KILL_INTERVAL_SECONDS)):
            consumers.revive_crashed()
            if phase_over():
                return
            if not victims:
                victims = rng.sample(sorted(CONSUMERS), len(CONSUMERS))
            name = victims.pop()
            consumers.kill_and_restart(name)
            print(f"  t={time.monotonic() - started:6.1f}s  SIGKILL {name} (#{sum(consumers.kills.values())}), "
                  "restarted", flush=True)
    except Exception as exc:
        consumers.killer_errors.append(exc)


# -- sending ----------------------------------------------------------------------------------------------------

class Sender:
    """Posts requests at `rate` events per second: request i is not sent before its time slot."""

    def __init__(self, base: str, key: str, rate: float) -> None:
        self._url = f"{base}/v1/events"
        self._headers = {"Authorization": f"Bearer {key}"}
        self._rate = rate
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self.sent = 0
        self.refusals: Counter[str] = Counter()  # 503s and connection errors, each retried

    def send_all(self, requests: list[list[dict[str, Any]]], clients: int) -> None:
        self._start = time.monotonic()
        slots, offered = [], 0
        for events in requests:
            slots.append(offered / self._rate)
            offered += len(events)
        with ThreadPoolExecutor(clients, thread_name_prefix="chaos-client") as pool:
            list(pool.map(self.post, requests, slots))

    def post(self, events: list[dict[str, Any]], slot: float = 0.0) -> None:
        time.sleep(max(0.0, self._start + slot - time.monotonic()))
        for _ in range(120):
            try:
                status, headers, answer = http_call("POST", self._url, {"events": events}, self._headers,
                                                    timeout=60)
            except OSError as exc:
                self._count(type(exc).__name__)
                time.sleep(1.0)
                continue
            if status == 202:
                assert answer == {"accepted": len(events)}, answer
                with self._lock:
                    self.sent += len(events)
                return
            if status != 503:
                raise AssertionError(f"gateway answered {status}: {answer}")
            self._count("503")
            time.sleep(float(headers.get("retry-after", "1")))
        raise AssertionError("a request was refused 120 times")

    def _count(self, what: str) -> None:
        with self._lock:
            self.refusals[what] += 1


# -- reading the outcome ----------------------------------------------------------------------------------------

def audit_triples(engine: Engine, app_id: str) -> tuple[set[tuple[str, str, str]], int, int]:
    """(distinct (event_id, network, status), rows, rows recording a ledger skip) for the app."""
    with engine.connect() as connection:
        triples = {(e, n, s) for e, n, s in connection.execute(
            select(AuditEntry.event_id, AuditEntry.network, AuditEntry.status).where(AuditEntry.app_id == app_id)
            .distinct())}
        rows = int(connection.scalar(select(func.count()).select_from(AuditEntry)
                                     .where(AuditEntry.app_id == app_id)) or 0)
        ledger_skips = int(connection.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.app_id == app_id, AuditEntry.detail == LEDGER_SKIP)) or 0)
    return triples, rows, ledger_skips


def delivery_latency(engine: Engine, app_id: str) -> tuple[float, float, int]:
    """p50, p99 and max of the network calls' latency (ms) of delivered jobs: a slow fake would show here."""
    column = AuditEntry.latency_ms
    with engine.connect() as connection:
        p50, p99, most = connection.execute(
            select(func.percentile_cont(0.5).within_group(column), func.percentile_cont(0.99).within_group(column),
                   func.max(column)).where(AuditEntry.app_id == app_id, AuditEntry.status == "delivered")).one()
    return float(p50 or 0), float(p99 or 0), int(most or 0)


def audit_rows(engine: Engine, app_id: str) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(AuditEntry)
                                     .where(AuditEntry.app_id == app_id)) or 0)


def longest_pause(requests: list[RecordedRequest], since: float) -> float:
    """The longest time without a call to a fake, from `since` (time.time()) to its last call: kills, the
    rebalances they cause and the stages upstream all show here."""
    times = [since, *sorted(request.at for request in requests)]
    return max((b - a for a, b in pairwise(times)), default=0.0)


def count_records(bootstrap: str, topics: list[str], idle_seconds: float = 5.0) -> Counter[str]:
    """Records in each topic, read from the start until nothing arrives for `idle_seconds`. No consumer group
    (assign) and no watermarks: this broker's get_watermark_offsets can under-report."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "chaos-counter", "enable.auto.commit": False})
    counts: Counter[str] = Counter(dict.fromkeys(topics, 0))
    try:
        metadata = consumer.list_topics(timeout=10).topics
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for topic in topics
                         for p in metadata[topic].partitions])
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < idle_seconds:
            for message in consumer.consume(1000, 0.5):
                if message.error() is None:
                    counts[message.topic() or ""] += 1
                    idle_since = time.monotonic()
    finally:
        consumer.close()
    return counts


# -- the test ---------------------------------------------------------------------------------------------------

def test_sigkilled_consumers_lose_nothing_and_duplicate_nothing(fresh_bootstrap: str, migrated_pg_url: str,
                                                                tmp_path: Path) -> None:
    expected = plan(EVENTS)
    rng = random.Random(SEED)
    create_topics(fresh_bootstrap, partitions=3, replication=1)
    engine = create_engine(migrated_pg_url)
    stop_killing = threading.Event()
    with FakeMeta() as meta, FakeTikTok() as tiktok:
        env = service_env(fresh_bootstrap, migrated_pg_url, APPREFER_RETRY_DELAYS="1,2,4,8,16",
                          APPREFER_META_BASE_URL=meta.base_url, APPREFER_TIKTOK_BASE_URL=tiktok.base_url)
        edge = start_edge(env, tmp_path)
        base = edge.base
        consumers: Consumers | None = None
        try:
            admin = edge.admin
            app = admin.new_app()
            integrations = {
                "meta": {"settings": {"dataset_id": "ds-1", "bundle_id": "com.example"},
                         "credentials": {"access_token": "meta-token"}},
                "tiktok": {"settings": {"tiktok_app_id": "tt-app-1"}, "credentials": {"access_token": "tiktok-token"}},
            }
            for network, body in integrations.items():
                admin.call("PUT", f"/apps/{app['app_id']}/integrations/{network}", body)
            consumers = Consumers(env, tmp_path)
            sender = Sender(base, app["live_key"], RATE)
            print(f"\nchaos: {expected.events:,} events offered at {RATE:.0f}/s, seed {SEED}, logs in {tmp_path}",
                  flush=True)

            started, started_wall = time.monotonic(), time.time()
            sent_at: list[float] = []

            def kill_phase_over() -> bool:
                now = time.monotonic()
                return now - started > KILL_PHASE_MAX_SECONDS or bool(
                    sent_at and now - sent_at[0] >= KILL_AFTER_SEND_SECONDS)

            killing = threading.Thread(target=killer, name="chaos-killer",
                                       args=(consumers, rng, kill_phase_over, stop_killing, started))
            killing.start()
            try:
                sender.send_all(expected.requests, CLIENTS)
                sent_at.append(time.monotonic())
                print(f"  t={sent_at[0] - started:6.1f}s  all {sender.sent:,} events accepted by the gateway",
                      flush=True)
                killing.join(KILL_PHASE_MAX_SECONDS + 30)
            finally:
                stop_killing.set()
                killing.join(30)
            killed_until = time.monotonic()

            # Drain: wait (bounded) until the fakes and the audit log hold everything expected.
            deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
            last_print = 0.0
            audited: set[tuple[str, str, str]] = set()
            while True:
                consumers.revive_crashed()
                meta_got, tiktok_got = set(meta.unique_events), set(tiktok.unique_events)
                forwarded = expected.meta <= meta_got and expected.tiktok <= tiktok_got
                if forwarded:
                    audited = audit_triples(engine, app["app_id"])[0]
                    if expected.audit <= audited:
                        break
                now = time.monotonic()
                if now > deadline:
                    break
                if now - last_print >= PROGRESS_EVERY_SECONDS:
                    last_print = now
                    print(f"  t={now - started:6.1f}s  draining: meta {len(meta_got & expected.meta):,}/"
                          f"{len(expected.meta):,}  tiktok {len(tiktok_got & expected.tiktok):,}/"
                          f"{len(expected.tiktok):,}  audit rows {audit_rows(engine, app['app_id']):,}", flush=True)
                time.sleep(1.0)
            drained_at = time.monotonic()
        finally:
            stop_killing.set()
            if consumers is not None:
                consumers.stop()
            edge.terminate()

        # The outcome, read once everything is stopped (nothing can still be in flight).
        meta_got, tiktok_got = set(meta.unique_events), set(tiktok.unique_events)
        resends = {"meta": meta.duplicates, "tiktok": tiktok.duplicates}
        raw_received = {"meta": (len(meta.events), len(meta.requests)),
                        "tiktok": (len(tiktok.events), len(tiktok.requests))}
        pauses = {name: longest_pause(fake.requests, started_wall) for name, fake in (("meta", meta),
                                                                                      ("tiktok", tiktok))}
    audited, rows, ledger_skips = audit_triples(engine, app["app_id"])
    latency = delivery_latency(engine, app["app_id"])
    engine.dispose()
    dlq_topics = [topic for topic in all_topics() if topic.endswith(".dlq")]
    flow = {"events.raw": expected.events, "events.attributed": expected.events, "forward.meta": len(expected.meta),
            "forward.tiktok": len(expected.tiktok), "audit.records": len(expected.audit)}
    counted = count_records(fresh_bootstrap, [*dlq_topics, *flow])

    lost = {"meta": expected.meta - meta_got, "tiktok": expected.tiktok - tiktok_got}
    stray = {"meta": meta_got - expected.meta, "tiktok": tiktok_got - expected.tiktok}
    missing_audit = expected.audit - audited
    bad_audit = Counter(status for _, _, status in audited if status in ("rejected", "dead_lettered", "retrying"))
    wall = drained_at - started
    figures = [
        ("events sent (accepted by the gateway)", f"{sender.sent:,} ({sender.sent // 2:,} installs, "
                                                  f"{sender.sent // 2:,} purchases)"),
        ("gateway refusals (retried)", ", ".join(f"{k} {v}" for k, v in sender.refusals.items()) or "0"),
        ("kills (SIGKILL + restart)", f"{sum(consumers.kills.values())}: " + ", ".join(
            f"{name} {consumers.kills[name]}" for name in CONSUMERS)),
        ("unexpected consumer exits", str(len(consumers.unexpected_exits))),
        ("meta: delivered unique", f"{len(meta_got & expected.meta):,} / {len(expected.meta):,} expected, "
                                   f"lost {len(lost['meta'])}, wrong network {len(stray['meta'])}"),
        ("tiktok: delivered unique", f"{len(tiktok_got & expected.tiktok):,} / {len(expected.tiktok):,} expected "
                                     f"(purchases + InstallApp), lost {len(lost['tiktok'])}, "
                                     f"wrong network {len(stray['tiktok'])}"),
        ("raw re-sends (deduped by event_id)", f"meta {resends['meta']}, tiktok {resends['tiktok']} "
                                               "(events received / calls: " + ", ".join(
                                                   f"{name} {events:,} / {calls}"
                                                   for name, (events, calls) in raw_received.items()) + ")"),
        ("audit rows", f"{rows:,} rows, {len(audited):,} distinct (event, network, status); expected "
                       f"{len(expected.audit):,}, missing {len(missing_audit)}"),
        ("audit 'already delivered' skips", f"{ledger_skips}"),
        ("audit rejected/dead_lettered/retrying", ", ".join(f"{k} {v}" for k, v in bad_audit.items()) or "0"),
        ("longest time without a network call", f"meta {pauses['meta']:.1f} s, tiktok {pauses['tiktok']:.1f} s"),
        ("network call latency (per delivered job)", f"p50 {latency[0]:.0f} ms, p99 {latency[1]:.0f} ms, "
                                                     f"max {latency[2]} ms"),
        ("records per topic (excess: re-produced)", ", ".join(f"{topic} {counted[topic]:,} (+{counted[topic] - n})"
                                                              for topic, n in flow.items())),
        ("DLQ sizes", ", ".join(f"{topic} {counted[topic]}" for topic in NAMED_DLQS)
         + f"; other .dlq topics {sum(counted[t] for t in dlq_topics if t not in NAMED_DLQS)}"),
        ("wall time", f"{wall:.1f} s (all sent at {sent_at[0] - started:.1f} s, last kill by "
                      f"{killed_until - started:.1f} s, then drained in {drained_at - killed_until:.1f} s)"
         if sent_at else f"{wall:.1f} s"),
        ("throughput", f"{sender.sent / wall:.0f} events/s end to end, under chaos"),
    ]
    width = max(len(name) for name, _ in figures)
    print(f"\nchaos figures (APPREFER_CHAOS_EVENTS={EVENTS}, seed {SEED}):")
    for name, value in figures:
        print(f"  {name:<{width}}  {value}")

    assert not consumers.killer_errors, consumers.killer_errors
    assert not consumers.unexpected_exits, "\n\n".join(consumers.unexpected_exits)
    assert sender.sent == expected.events
    assert not lost["meta"] and not lost["tiktok"], f"lost: {sorted(lost['meta'])[:10]} {sorted(lost['tiktok'])[:10]}"
    assert not stray["meta"] and not stray["tiktok"], f"at the wrong network: {stray}"
    assert len(meta_got) == len(expected.meta) and len(tiktok_got) == len(expected.tiktok)
    assert not missing_audit, f"{len(missing_audit)} audit rows missing, e.g. {sorted(missing_audit)[:10]}"
    assert not bad_audit.get("rejected") and not bad_audit.get("dead_lettered"), bad_audit
    assert all(counted[topic] >= n for topic, n in flow.items())  # the reader sees records: an empty DLQ is empty
    assert all(counted[topic] == 0 for topic in dlq_topics), {t: counted[t] for t in dlq_topics if counted[t]}
