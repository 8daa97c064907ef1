"""AsyncProducer and SyncProducer against a real broker, and against one that is down."""

from __future__ import annotations

import asyncio
import gc
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from shared.kafka.config import producer_config
from shared.kafka.producer import AsyncProducer, DeliveryFailed, ProducerQueueFull, SyncProducer
from shared.kafka.records import OutRecord
from shared.settings import Settings
from tests.support.ports import free_port
from tests.support.topic_reading import read_all

pytestmark = pytest.mark.timeout(60)

MESSAGE_TIMEOUT_S = 1.0
# librdkafka scans for timed-out messages about once a second, so allow that on top.
FAIL_WITHIN_S = MESSAGE_TIMEOUT_S + 2.0


def config(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    return producer_config(Settings(kafka_bootstrap_servers=bootstrap), **overrides)


def down_config_with(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    # log_level 2 hides the connection-refused error lines librdkafka prints until the handle is freed.
    return config(bootstrap, **{"message.timeout.ms": int(MESSAGE_TIMEOUT_S * 1000), "log_level": 2, **overrides})


@pytest.fixture
def down_bootstrap() -> str:
    """A bootstrap address nobody listens on."""
    return f"127.0.0.1:{free_port()}"


@pytest.fixture
def down_config(down_bootstrap: str) -> dict[str, Any]:
    return down_config_with(down_bootstrap)


def create_topics(bootstrap: str, topics: list[str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(t, num_partitions=2, replication_factor=1) for t in topics]).values():
        future.result(timeout=30)


def records(topics: list[str], n: int) -> list[OutRecord]:
    return [
        OutRecord(topics[i % len(topics)], f"v{i}".encode(), f"k{i}".encode(), [("i", str(i).encode())])
        for i in range(n)
    ]


async def test_async_send_resolves_once_every_record_is_acknowledged(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topics = [unique_name("produced") for _ in range(3)]
    create_topics(kafka_bootstrap, topics)
    # A long linger keeps records unsent for a while: a send resolving early would read back short.
    producer = AsyncProducer(config(kafka_bootstrap, **{"linger.ms": 300}))
    try:
        batch = records(topics, 1000)
        await asyncio.wait_for(producer.send(batch), 30)
        by_topic = {t: read_all(kafka_bootstrap, t) for t in topics}
        # Concurrent sends each get their own future.
        more = [OutRecord(topics[0], f"w{j}-{i}".encode()) for j in range(3) for i in range(50)]
        await asyncio.wait_for(asyncio.gather(*(producer.send(more[j::3]) for j in range(3))), 30)
        more_read = [m.value() for m in read_all(kafka_bootstrap, topics[0]) if m.key() is None]
    finally:
        producer.close(timeout=5)

    assert {t: len(ms) for t, ms in by_topic.items()} == {topics[0]: 334, topics[1]: 333, topics[2]: 333}
    sent = {(r.topic, r.key, r.value, tuple(r.headers)) for r in batch}
    assert {(t, m.key(), m.value(), tuple(m.headers() or [])) for t, ms in by_topic.items() for m in ms} == sent
    assert Counter(more_read) == Counter(r.value for r in more)


async def test_async_send_of_nothing_returns_at_once(down_config: dict[str, Any]) -> None:
    producer = AsyncProducer(down_config)  # nothing could be acknowledged
    try:
        started = time.monotonic()
        await asyncio.wait_for(producer.send([]), 1)
        assert time.monotonic() - started < 0.05
    finally:
        producer.close(timeout=1)


async def test_async_send_to_a_down_broker_raises_delivery_failed(down_config: dict[str, Any]) -> None:
    producer = AsyncProducer(down_config)
    try:
        started = time.monotonic()
        with pytest.raises(DeliveryFailed):
            await asyncio.wait_for(producer.send(records(["nowhere"], 5)), FAIL_WITHIN_S + 5)
        assert time.monotonic() - started < FAIL_WITHIN_S
    finally:
        producer.close(timeout=1)


async def test_async_send_past_a_full_queue_raises_without_leaving_a_dangling_future(
    down_bootstrap: str,
) -> None:
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))
    producer = AsyncProducer(down_config_with(down_bootstrap, **{"queue.buffering.max.messages": 10}))
    try:
        started = time.monotonic()
        with pytest.raises(ProducerQueueFull):
            await asyncio.wait_for(producer.send(records(["nowhere"], 100)), 5)
        assert time.monotonic() - started < 0.5  # shed at once, not after a delivery timeout
    finally:
        producer.close(timeout=FAIL_WITHIN_S + 2)  # waits out the queued records' delivery reports
    await asyncio.sleep(0.05)  # let any call_soon_threadsafe from the poll thread run
    gc.collect()  # an abandoned future holding an exception complains when collected
    assert loop_errors == []


def test_sync_send_all_to_a_down_broker_raises_delivery_failed(down_config: dict[str, Any]) -> None:
    producer = SyncProducer(down_config)
    try:
        started = time.monotonic()
        # Timed-out records are sent again until `timeout`, then it gives up, saying why.
        with pytest.raises(DeliveryFailed, match=r"(?i)not acknowledged within 4s.*timed out"):
            producer.send_all(records(["nowhere"], 5), timeout=4)
        assert 4 <= time.monotonic() - started < 4 + FAIL_WITHIN_S
        with pytest.raises(DeliveryFailed):
            producer.health()  # readiness sees it
        # A timeout shorter than the delivery timeout fails too, rather than pretending success.
        with pytest.raises(DeliveryFailed, match="not acknowledged"):
            producer.send_all(records(["nowhere"], 5), timeout=0.2)
    finally:
        producer.close(timeout=FAIL_WITHIN_S + 2)


def test_sync_send_all_succeeds_and_survives_a_full_queue(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("produced")
    create_topics(kafka_bootstrap, [topic])
    # A queue much smaller than the batch: send_all waits for room instead of failing.
    producer = SyncProducer(config(kafka_bootstrap, **{"queue.buffering.max.messages": 10}))
    try:
        batch = records([topic], 200)
        producer.send_all(batch, timeout=30)
    finally:
        producer.close(timeout=5)
    assert Counter(m.value() for m in read_all(kafka_bootstrap, topic)) == Counter(r.value for r in batch)
