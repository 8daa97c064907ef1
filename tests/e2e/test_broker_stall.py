"""A 20 s broker stall (SIGSTOP, then SIGCONT): ingestion comes back by itself, and readiness tells
the truth throughout.

After such a stall the bundled broker fences the idempotent producer (PRODUCER_FENCED on every
record, for ever after); before the fix the gateway answered 503 to every event while /readyz said
200. The gateway and the consumers now replace a producer that became unusable.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from shared.kafka.topics import EVENTS_ATTRIBUTED, create_topics
from tests.support.broker import BrokerProcess
from tests.support.pipeline import ServiceProcess, http_call, read_topic, service_env, start_edge
from tests.support.pipeline import wait_until as wait
from tests.support.ports import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

STALL_SECONDS = 20
BACK_WITHIN_SECONDS = 30


def event(event_id: str) -> dict[str, Any]:
    return {"event_id": event_id, "event_name": "purchase", "event_time": int(time.time()),
            "device": {"device_id": f"d-{event_id}", "os": "android"}}


class Prober:
    """Posts an event and asks each /readyz twice a second, remembering (start time, status)."""

    def __init__(self, base: str, key: str, consumer_ready_url: str) -> None:
        self.base, self.key, self.consumer_ready_url = base, key, consumer_ready_url
        self.posts: list[tuple[float, float, int]] = []  # (started, finished, status)
        self.ready: list[tuple[float, float, int]] = []  # (started, finished, status)
        self.consumer_ready: list[tuple[float, float, int]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._post, daemon=True),
                        threading.Thread(target=self._probe, daemon=True)]

    def _post(self) -> None:
        n = 0
        while not self.stop.wait(0.5):
            n += 1
            started = time.monotonic()
            try:
                status = http_call("POST", f"{self.base}/v1/events", event(f"e{n}"),
                                   {"Authorization": f"Bearer {self.key}"}, timeout=30)[0]
            except OSError:
                status = 0
            self.posts.append((started, time.monotonic(), status))

    def _probe(self) -> None:
        while not self.stop.wait(0.5):
            for url, into in ((f"{self.base}/readyz", self.ready), (self.consumer_ready_url, self.consumer_ready)):
                started = time.monotonic()
                try:
                    status = http_call("GET", url, timeout=10)[0]
                except OSError:
                    status = 0
                into.append((started, time.monotonic(), status))

    def __enter__(self) -> Prober:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(35)


@pytest.mark.skipif(bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")), reason="needs a broker of its own to pause")
def test_a_broker_stall_is_survived_and_readiness_is_truthful(migrated_pg_url: str, tmp_path: Path) -> None:
    with BrokerProcess() as broker:
        create_topics(broker.bootstrap, partitions=3, replication=1)
        env = service_env(broker.bootstrap, migrated_pg_url)
        edge = start_edge(env, tmp_path)
        base = edge.base
        metrics_port = free_port()
        attribution = ServiceProcess(["run", "attribution"], {**env, "APPREFER_METRICS_PORT": str(metrics_port)},
                                     tmp_path).start()
        consumer_ready = f"http://127.0.0.1:{metrics_port}/readyz"
        try:
            app = edge.admin.new_app()
            key = app["live_key"]
            wait(lambda: _status(consumer_ready) == 200, timeout=30, what="attribution ready")
            with Prober(base, key, consumer_ready) as prober:
                wait(lambda: any(s == 202 for _, _, s in prober.posts), timeout=10, what="events accepted")
                assert broker._proc is not None
                os.kill(broker._proc.pid, signal.SIGSTOP)
                stopped_at = time.monotonic()
                time.sleep(STALL_SECONDS)
                os.kill(broker._proc.pid, signal.SIGCONT)
                resumed_at = time.monotonic()
                wait(lambda: _accepting_since(prober.posts, resumed_at) is not None,
                     timeout=BACK_WITHIN_SECONDS + 30, what="events accepted again")
                back_at = _accepting_since(prober.posts, resumed_at)
                time.sleep(5)  # and it stays so
            edge.assert_alive()

            assert back_at is not None and back_at - resumed_at < BACK_WITHIN_SECONDS, (
                f"events accepted again {back_at and back_at - resumed_at:.1f}s after the broker came back")
            # Readiness during the stall: not ready (the first probes may have started before it).
            stalled = [s for t, done, s in prober.ready if stopped_at + 3 < t and done < resumed_at]
            assert stalled and all(s == 503 for s in stalled), stalled
            # Truthful after it: once /readyz says 200, events sent a moment later are accepted.
            first_ready = min(done for t, done, s in prober.ready if t > resumed_at and s == 200)
            later = [s for started, _, s in prober.posts if started > first_ready + 2]
            assert later and all(s == 202 for s in later), (later, _timeline(prober, resumed_at))
            assert all(s == 200 for t, _, s in prober.ready if t > back_at + 2), _timeline(prober, resumed_at)

            # The consumer: not ready while the broker was away, then ready and working again.
            consumer_stalled = [s for t, done, s in prober.consumer_ready if stopped_at + 3 < t and done < resumed_at]
            assert consumer_stalled and all(s in (0, 503) for s in consumer_stalled), consumer_stalled
            wait(lambda: _status(consumer_ready) == 200, timeout=30, what="attribution ready again")
            status = http_call("POST", f"{base}/v1/events", event("after-stall"),
                               {"Authorization": f"Bearer {key}"})[0]
            assert status == 202
            read_topic(broker.bootstrap, EVENTS_ATTRIBUTED,
                       lambda rs: any(r["value"]["event"]["event_id"] == "after-stall" for r in rs), timeout=60)
            attribution.assert_alive()
        finally:
            attribution.terminate()
            edge.terminate()


def _status(url: str) -> int:
    try:
        return http_call("GET", url, timeout=5)[0]
    except OSError:
        return 0


def _accepting_since(posts: list[tuple[float, float, int]], after: float) -> float | None:
    """When the run of accepted posts that lasts to the end began (started after `after`)."""
    since = None
    for started, _finished, status in posts:
        if started <= after:
            continue
        if status != 202:
            since = None
        elif since is None:
            since = started
    return since


def _timeline(prober: Prober, origin: float) -> str:
    posts = " ".join(f"{s - origin:+.1f}:{st}" for s, _, st in prober.posts if s > origin - 2)
    ready = " ".join(f"{t - origin:+.1f}:{st}" for t, _, st in prober.ready if t > origin - 2)
    return f"posts {posts}\nreadyz {ready}"
