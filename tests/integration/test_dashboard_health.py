"""The dashboard's Health page data (services/admin/dashboard/health.py) against real things: aiohttp servers on
127.0.0.1 standing in for the services (one ready with a metrics page of consumer lag, one answering 503 with a
reason, a consumer whose checks fail, one that hangs, one port nobody listens on), a real broker whose retry and
dead-letter topics hold records, and a broker address that never answers.

Records are produced one produce request each: the bundled broker (Tansu) reports a partition's high watermark
one request late, so a batch would be undercounted by the last one (services/admin/dashboard/health.py says so)."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from services.admin.dashboard.health import (
    REQUEST_TIMEOUT_SECONDS,
    HealthReport,
    ServiceHealth,
    collect,
    monitored_topics,
    topic_depths,
)
from shared.kafka.topics import all_topics, create_topics
from shared.settings import Settings
from tests.support.ports import free_port

pytestmark = pytest.mark.timeout(120)

BOUND_SECONDS = 2.5  # collect's answer, whatever hangs: about 2 s, and some room for a loaded machine


def produce_one_by_one(bootstrap: str, records: list[tuple[str, int]]) -> None:
    """Each (topic, partition) record in a produce request of its own, acknowledged."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    errors: list[Any] = []
    for topic, partition in records:
        producer.produce(topic, b"letter", partition=partition,
                         on_delivery=lambda err, _msg: errors.append(err) if err else None)
        assert producer.flush(10) == 0
    assert not errors, errors


def create(bootstrap: str, topics: list[str], partitions: int = 3) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1)
                                       for t in topics]).values():
        future.result(timeout=30)


def lag_page(samples: dict[tuple[str, str], float]) -> bytes:
    """A consumer's /metrics: the real exposition of the gauge shared/metrics.py declares, plus another metric."""
    registry = CollectorRegistry()
    lag = Gauge("apprefer_consumer_lag", "Records behind the high watermark", ["service", "topic", "partition"],
                registry=registry)
    for (topic, partition), value in samples.items():
        lag.labels("attribution", topic, partition).set(value)
    Gauge("apprefer_other", "not lag", registry=registry).set(1000)
    return generate_latest(registry)


class StandIns:
    """The stand-in services, each an aiohttp server on its own free port."""

    def __init__(self) -> None:
        self.servers: dict[str, TestServer] = {}
        self.release = asyncio.Event()  # the hanging one answers only at the end of the test

    async def add(self, name: str, ready: web.Response | None, metrics: bytes = b"") -> None:
        async def readyz(_request: web.Request) -> web.Response:
            if ready is None:
                await self.release.wait()
                return web.json_response({"status": "ready"})
            return ready

        async def metrics_page(_request: web.Request) -> web.Response:
            if ready is None:
                await self.release.wait()
            return web.Response(body=metrics, content_type="text/plain")

        app = web.Application()
        app.router.add_get("/readyz", readyz)
        app.router.add_get("/metrics", metrics_page)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        self.servers[name] = server

    def url(self, name: str) -> str:
        return str(self.servers[name].make_url("")).rstrip("/")

    async def close(self) -> None:
        self.release.set()
        for server in self.servers.values():
            await server.close()


@pytest.fixture
async def stand_ins() -> AsyncIterator[StandIns]:
    services = StandIns()
    await services.add("gateway", web.json_response({"status": "ready"}), b"# nothing of lag here\n")
    await services.add("attribution", web.json_response({"status": "ready"}),
                       lag_page({("clicks.raw", "0"): 5, ("clicks.raw", "1"): 7, ("events.raw", "0"): 30}))
    await services.add("fanout", web.json_response({"status": "unavailable", "reason": "producer queue full"},
                                                   status=503))
    await services.add("audit", web.json_response(
        {"status": "unavailable", "failures": {"database": "OperationalError: connection refused"}}, status=503),
        lag_page({("audit.records", "2"): 1}))
    await services.add("skan", None)  # hangs
    try:
        yield services
    finally:
        await services.close()


@pytest.fixture
def silent_broker() -> Iterator[str]:
    """An address that accepts connections and never answers (a broker behind a dead proxy)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"127.0.0.1:{listener.getsockname()[1]}"


def settings_for(bootstrap: str, stand_ins: StandIns, *, refused_port: int) -> Settings:
    targets = {name: stand_ins.url(name) for name in stand_ins.servers}
    targets["forwarder-meta"] = f"http://127.0.0.1:{refused_port}"
    return Settings(KAFKA_BOOTSTRAP_SERVERS=bootstrap,
                    APPREFER_HEALTH_TARGETS=",".join(f"{name}={url}" for name, url in targets.items()))


async def timed_collect(settings: Settings) -> tuple[HealthReport, float]:
    async with aiohttp.ClientSession() as session:
        began = time.monotonic()
        report = await collect(settings, session)
        return report, time.monotonic() - began


def by_name(report: HealthReport) -> dict[str, ServiceHealth]:
    return {service.name: service for service in report.services}


async def test_one_hung_service_costs_only_its_own_row(fresh_bootstrap: str, stand_ins: StandIns) -> None:
    create_topics(fresh_bootstrap, partitions=3, replication=1)
    await asyncio.to_thread(produce_one_by_one, fresh_bootstrap,
                            [("forward.meta.dlq", i % 3) for i in range(5)] + [("forward.tiktok.retry", 1)] * 2)
    report, elapsed = await timed_collect(settings_for(fresh_bootstrap, stand_ins, refused_port=free_port()))

    assert REQUEST_TIMEOUT_SECONDS <= elapsed < BOUND_SECONDS, elapsed  # it waited for the hung one, no longer
    services = by_name(report)
    assert list(services) == ["gateway", "attribution", "fanout", "audit", "skan", "forwarder-meta"]
    assert services["gateway"] == ServiceHealth("gateway", stand_ins.url("gateway"), True, "ready", None)
    assert (services["attribution"].ready, services["attribution"].lag) == (True, 42)  # 5 + 7 + 30
    assert services["fanout"] == ServiceHealth("fanout", stand_ins.url("fanout"), False, "producer queue full", None)
    assert services["audit"].detail == "database: OperationalError: connection refused"
    assert (services["audit"].ready, services["audit"].lag) == (False, 1)
    assert not services["skan"].ready and services["skan"].detail.startswith("not answering"), services["skan"]
    assert services["forwarder-meta"].detail == "not answering (Connection refused)"

    depths = {(depth.topic, depth.kind): depth.depth for depth in report.topics}
    assert set(depths) == set(monitored_topics())  # every retry and DLQ topic, each once
    if "KAFKA_BOOTSTRAP_SERVERS" not in os.environ:  # the test's own broker (a shared one may hold other letters)
        assert depths[("forward.meta.dlq", "dlq")] == 5 and depths[("forward.tiktok.retry", "retry")] == 2
        assert sum(depths.values()) == 7
    assert report.errors == []


async def test_a_broker_that_does_not_answer_is_an_error_not_an_exception(silent_broker: str,
                                                                          stand_ins: StandIns) -> None:
    report, elapsed = await timed_collect(settings_for(silent_broker, stand_ins, refused_port=free_port()))
    assert elapsed < BOUND_SECONDS, elapsed
    assert report.topics == []
    assert len(report.errors) == 1 and silent_broker in report.errors[0], report.errors
    assert by_name(report)["attribution"].lag == 42  # the services are reported all the same


def test_depth_is_the_sum_over_partitions_of_each_topic(kafka_bootstrap: str,
                                                        unique_name: Callable[[str], str]) -> None:
    dlq, retry, empty, absent = (unique_name("health") + suffix for suffix in (".dlq", ".retry", ".dlq", ".dlq"))
    create(kafka_bootstrap, [dlq, retry, empty])
    produce_one_by_one(kafka_bootstrap, [(dlq, 0)] * 3 + [(dlq, 1)] * 2 + [(dlq, 2)] * 4 + [(retry, 2)])
    wanted = [(dlq, "dlq"), (retry, "retry"), (empty, "dlq"), (absent, "dlq")]
    began = time.monotonic()
    found, errors = topic_depths(kafka_bootstrap, wanted)  # type: ignore[arg-type]
    assert time.monotonic() - began < BOUND_SECONDS
    assert [(d.topic, d.kind, d.depth) for d in found] == [(dlq, "dlq", 9), (retry, "retry", 1), (empty, "dlq", 0)]
    assert errors == [f"not on the broker (apprefer topics create makes them): {absent}"]


def test_the_retry_and_dead_letter_topics_are_those_apprefer_creates() -> None:
    created = set(all_topics())
    watched = monitored_topics()
    assert {topic for topic, _ in watched} <= created
    assert {topic for topic, kind in watched if kind == "dlq"} == {t for t in created if t.endswith(".dlq")}
    assert {topic for topic, kind in watched if kind == "retry"} == {t for t in created if t.endswith(".retry")}


# --------------------------------------------------------------------------------------- the targets setting


def test_unset_targets_are_where_apprefer_dev_puts_each_service() -> None:
    from services.catalog import default_health_targets, services

    settings = Settings(APPREFER_GATEWAY_PORT=9000, APPREFER_ADMIN_PORT=9001, APPREFER_ADMIN_HOST="0.0.0.0",
                        APPREFER_HEALTH_TARGETS="")
    targets = default_health_targets(settings)
    assert list(targets) == [service.name for service in services()]
    assert targets["gateway"] == "http://127.0.0.1:9000" and targets["admin"] == "http://127.0.0.1:9001"
    assert targets["attribution"] == "http://127.0.0.1:9002"
    assert [int(url.rsplit(":", 1)[1]) for url in targets.values()][2:] == list(range(9002, 9000 + len(targets)))


@pytest.mark.parametrize(("value", "message"), [
    ("gateway", "entry 'gateway' is not name=url"),
    ("=http://h:1", "entry '=http://h:1' is not name=url"),
    ("gateway=127.0.0.1:8080", "'127.0.0.1:8080' is not an http:// or https:// base URL"),
    ("gateway=http://h:99999", "the port of 'http://h:99999' is not a port number"),
    ("a=http://h:1,a=http://h:2", "'a' is given twice"),
])
def test_a_bad_target_is_refused_naming_the_entry(value: str, message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        Settings(APPREFER_HEALTH_TARGETS=value)
    parsed = Settings(APPREFER_HEALTH_TARGETS=" gateway = http://10.0.0.5:8080/ ,, audit=https://audit.internal ")
    assert parsed.health_target_urls == {"gateway": "http://10.0.0.5:8080", "audit": "https://audit.internal"}
