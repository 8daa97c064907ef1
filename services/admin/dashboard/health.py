"""The dashboard's Health page: each service's readiness and consumer lag, from the service's own `/readyz` and
`/metrics`, and how many records sit on each retry and dead-letter topic, from the broker.

Which services, and where: APPREFER_HEALTH_TARGETS (`name=url,...`), else every service where `apprefer dev`
puts it on this host (services/catalog.py, default_health_targets).

Everything is asked at once, each question bounded (REQUEST_TIMEOUT_SECONDS per request, BROKER_TIMEOUT_SECONDS
for the broker), so a service that hangs costs only its own row ("not answering") and a broker that does not
answer is an entry in `errors`: collect() answers in about 2 s whatever the deployment does, and raises nothing
for what it finds down.

- ready: /readyz answered 200. detail: the answer's `reason` (the gateway, the admin service), its `failures`
  (the consumers, shared/health.py), else its `status`; or why there was no answer.
- lag: the sum of the `apprefer_consumer_lag` samples (shared/metrics.py) of the service's /metrics: records its
  consumer group has yet to read, every topic and partition; None when the page has none (not a consumer, or
  before its first batch) or could not be read.
- depth: per topic, the sum over its partitions of the high watermark less the low watermark: the records the
  topic holds, not the ones left to handle (a dead letter stays after its replay; a retry record stays after it is
  retried, until retention). The bundled broker (Tansu) reports a partition's high watermark one produce request
  late, so there it can miss the records of the last produce request; Kafka's is exact.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import orjson
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from prometheus_client.parser import text_string_to_metric_families

from services.catalog import default_health_targets
from shared.kafka.dlq import BrokerUnreachable, cluster_metadata, dead_letter_topics, tool_client_config
from shared.kafka.topics import all_topics
from shared.settings import Settings

REQUEST_TIMEOUT_SECONDS = 1.5  # each /readyz and /metrics request, connecting included
BROKER_TIMEOUT_SECONDS = 1.5  # the metadata and both offset look-ups together
LAG_METRIC = "apprefer_consumer_lag"
DETAIL_CHARS = 300  # a readiness answer's reason can be a whole exception text

TopicKind = Literal["retry", "dlq"]


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    name: str
    url: str
    ready: bool
    detail: str
    lag: int | None


@dataclass(frozen=True, slots=True)
class TopicDepth:
    topic: str
    kind: TopicKind
    depth: int


@dataclass(frozen=True, slots=True)
class HealthReport:
    services: list[ServiceHealth]
    topics: list[TopicDepth]
    errors: list[str]


async def collect(settings: Settings, session: aiohttp.ClientSession) -> HealthReport:
    """Every service's readiness and lag, and every retry and dead-letter topic's depth, asked concurrently."""
    targets = settings.health_target_urls or default_health_targets(settings)
    depths = asyncio.create_task(asyncio.wait_for(
        asyncio.to_thread(topic_depths, settings.kafka_bootstrap_servers, monitored_topics()),
        BROKER_TIMEOUT_SECONDS + 0.5))  # the thread bounds itself; this bounds the page if librdkafka does not
    try:
        checked = await asyncio.gather(*(_service(session, name, url) for name, url in targets.items()))
    except BaseException:  # the request went away (cancelled): the broker's answer is not wanted either
        depths.cancel()
        raise
    errors = [error for _, error in checked if error]
    try:
        topics, broker_errors = await depths
    except TimeoutError:
        topics, broker_errors = [], [f"no answer from the Kafka broker at {settings.kafka_bootstrap_servers} within "
                                     f"{BROKER_TIMEOUT_SECONDS:g} s: retry and dead-letter depths unknown"]
    return HealthReport(services=[health for health, _ in checked], topics=topics, errors=errors + broker_errors)


def monitored_topics() -> list[tuple[str, TopicKind]]:
    """Each forwarder's retry topic, then every dead-letter topic (`apprefer dlq` lists the same)."""
    retry: list[tuple[str, TopicKind]] = [(topic, "retry") for topic in all_topics() if topic.endswith(".retry")]
    return retry + [(topic, "dlq") for topic in dead_letter_topics()]


def topic_depths(bootstrap: str, topics: Sequence[tuple[str, TopicKind]], timeout: float = BROKER_TIMEOUT_SECONDS
                 ) -> tuple[list[TopicDepth], list[str]]:
    """The depth of each of `topics` on the broker (blocking, within about `timeout`), and what could not be read.
    A topic the broker does not have is an error, not a depth of 0."""
    deadline = time.monotonic() + timeout
    config, watch = tool_client_config(bootstrap, **{
        "socket.connection.setup.timeout.ms": max(1000, int(timeout * 1000)),  # librdkafka's least
        # Every broker connected at once rather than on demand: the metadata answer comes in a few ms instead of
        # the ~50 ms a lazily opened connection costs (measured on the bundled broker), on each page load.
        "enable.sparse.connections": False})
    admin = AdminClient(config)
    try:
        metadata = cluster_metadata(admin, watch, bootstrap, timeout=timeout)
    except BrokerUnreachable as exc:
        return [], [f"{exc} within {timeout:g} s: retry and dead-letter depths unknown"]
    errors: list[str] = []
    partitions: dict[str, list[TopicPartition]] = {}
    missing = []
    for topic, _kind in topics:
        described = metadata.topics.get(topic)
        if described is None or described.error is not None:
            missing.append(topic)
        else:
            partitions[topic] = [TopicPartition(topic, p) for p in sorted(described.partitions)]
    if missing:
        errors.append(f"not on the broker (apprefer topics create makes them): {', '.join(missing)}")
    everything = [tp for found in partitions.values() for tp in found]
    if not everything:
        return [], errors
    try:
        asked = max(0.1, deadline - time.monotonic())
        low_futures, high_futures = (admin.list_offsets({tp: spec for tp in everything}, request_timeout=asked)
                                     for spec in (OffsetSpec.earliest(), OffsetSpec.latest()))  # both at once
        low, high = _offsets(low_futures, deadline), _offsets(high_futures, deadline)
    except (KafkaException, FutureTimeout) as exc:
        reason = str(exc) or f"no answer within {timeout:g} s"
        return [], [*errors, f"cannot read the topics' offsets from {bootstrap}: {reason}"]
    found = [TopicDepth(topic, kind, sum(max(0, high[(topic, p.partition)] - low[(topic, p.partition)])
                                         for p in partitions[topic]))
             for topic, kind in topics if topic in partitions]
    return found, errors


def _offsets(futures: Mapping[TopicPartition, Future[Any]], deadline: float) -> dict[tuple[str, int], int]:
    return {(tp.topic, tp.partition): int(future.result(timeout=max(0.1, deadline - time.monotonic())).offset)
            for tp, future in futures.items()}


# ------------------------------------------------------------------------------------------------ a service


async def _service(session: aiohttp.ClientSession, name: str, url: str) -> tuple[ServiceHealth, str | None]:
    """The service's row, and an error line when it answered /readyz but its /metrics could not be read."""
    (status, body), metrics = await asyncio.gather(_get(session, f"{url}/readyz"), _get(session, f"{url}/metrics"))
    if status is None:
        return ServiceHealth(name, url, ready=False, detail=body, lag=None), None
    lag, error = None, None
    metrics_status, metrics_body = metrics
    if metrics_status == 200:
        try:
            lag = consumer_lag(metrics_body)
        except ValueError as exc:
            error = f"{name}: /metrics is not Prometheus text: {exc}"[:DETAIL_CHARS]
    else:
        error = f"{name}: /metrics: {metrics_body if metrics_status is None else f'HTTP {metrics_status}'}"
    return ServiceHealth(name, url, ready=status == 200, detail=readiness_detail(status, body), lag=lag), error


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int | None, str]:
    """(status, body), or (None, why there was no answer)."""
    try:
        async with session.get(url, allow_redirects=False,
                               timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)) as response:
            return response.status, await response.text(errors="replace")
    except TimeoutError:
        return None, f"not answering (no answer within {REQUEST_TIMEOUT_SECONDS:g} s)"
    except aiohttp.ClientConnectorError as exc:
        failed = exc.os_error
        return None, f"not answering ({os.strerror(failed.errno) if failed.errno else failed})"
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return None, f"not answering ({type(exc).__name__}: {exc})"[:DETAIL_CHARS]


def readiness_detail(status: int, body: str) -> str:
    """What a /readyz answer says: its reason, its failed checks, else its status."""
    try:
        answer: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        return f"HTTP {status}"
    failures = answer.get("failures")
    if answer.get("reason"):
        detail = str(answer["reason"])
    elif isinstance(failures, dict) and failures:
        detail = "; ".join(f"{check}: {why}" for check, why in failures.items())
    else:
        detail = str(answer.get("status") or f"HTTP {status}")
    return detail if len(detail) <= DETAIL_CHARS else detail[:DETAIL_CHARS - 1] + "\u2026"


def consumer_lag(metrics_text: str) -> int | None:
    """The sum of a /metrics page's apprefer_consumer_lag samples; None when it has none. ValueError when the
    text is not Prometheus text."""
    samples = [sample.value for family in text_string_to_metric_families(metrics_text) if family.name == LAG_METRIC
               for sample in family.samples]
    return int(sum(samples)) if samples else None
