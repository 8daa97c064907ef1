"""ConsumerRunner when the broker refuses an output or a dead letter for good (too large).

The record limit is lowered to 200 kB (the producer's message.max.bytes and the runner's
`max_record_bytes`) so the records that break it stay small enough to write quickly.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shared.avro import codec
from shared.kafka.config import consumer_config, producer_config
from shared.kafka.consumer import ConsumerRunner, message_headers
from shared.kafka.producer import SyncProducer
from shared.kafka.records import DLQ_EXCERPT_BYTES, InRecord, OutRecord, header
from shared.settings import Settings
from tests.integration.test_consumer_runner import (
    SERVICE,
    RunnerThread,
    click,
    click_keys,
    committed,
    create_topics,
    produce,
    wait_until,
)
from tests.support.topic_reading import read_all

pytestmark = pytest.mark.timeout(90)

LIMIT = 200_000


def small_limit_runner(bootstrap: str, group: str, topic: str,
                       handler: Callable[[list[InRecord]], list[OutRecord]]) -> ConsumerRunner:
    settings = Settings(kafka_bootstrap_servers=bootstrap, APPREFER_KAFKA_MAX_RECORD_BYTES=LIMIT)
    return ConsumerRunner(
        service=SERVICE, consumer_config=consumer_config(settings, group), topics=[topic], handler=handler,
        producer=SyncProducer(producer_config(settings), SERVICE), codec=codec(), poll_timeout=0.1,
        max_record_bytes=settings.kafka_max_record_bytes,
    )


def test_a_refused_output_is_dead_lettered_as_its_input_and_the_rest_is_produced_once(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic, out, group = unique_name("clicks"), unique_name("out"), unique_name("group")
    dlq = f"{topic}.dlq"
    create_topics(kafka_bootstrap, topic, out, dlq, partitions=1)  # one partition: one batch, known offsets
    near_limit = b"\x00not avro" + b"z" * (LIMIT - 100)  # undecodable; its dead letter's headers overflow
    records = [(f"c{i}".encode(), click(f"c{i}"), []) for i in range(40)]
    records.insert(7, (b"huge", click("huge"), [("trace", b"t-huge")]))
    records.insert(20, (b"near", near_limit, []))
    ends = produce(kafka_bootstrap, topic, records, partition=0)
    batches: list[int] = []

    def handler(batch: list[InRecord]) -> list[OutRecord]:
        batches.append(len(batch))
        # The output of "huge" is larger than the broker takes: its attribution, say, grew it.
        return [OutRecord(out, b"y" * (LIMIT + 1) if r.key == b"huge" else r.raw_value or b"", r.key, origin=r)
                for r in batch]

    runner = RunnerThread(small_limit_runner(kafka_bootstrap, group, topic, handler)).start()
    wait_until(lambda: committed(kafka_bootstrap, group, topic, 1) == ends, what="offsets committed to the end")
    assert runner.thread.is_alive()  # never crashed
    runner.stop_and_join()

    assert batches[0] > 1  # "huge" shared its batch with good records
    assert sorted(click_keys(read_all(kafka_bootstrap, out))) == sorted(f"c{i}" for i in range(40))  # once each
    dead = {m.key(): m for m in read_all(kafka_bootstrap, dlq)}
    assert set(dead) == {b"huge", b"near"}

    huge = dead[b"huge"]
    headers = message_headers(huge)
    assert huge.value() == click("huge")  # the input, whole: it fits
    assert header(headers, "dlq.source_offset") == b"7" and header(headers, "dlq.source_topic") == topic.encode()
    assert header(headers, "dlq.output_topic") == out.encode()
    assert b"too large" in (header(headers, "dlq.error") or b"").lower()
    assert header(headers, "trace") == b"t-huge"

    near = dead[b"near"]
    headers = message_headers(near)
    assert near.value() == near_limit[:DLQ_EXCERPT_BYTES]  # cut down to an excerpt, so it fits
    assert header(headers, "dlq.truncated_from_bytes") == str(len(near_limit)).encode()
    assert header(headers, "dlq.source_offset") == b"20"
    error = (header(headers, "dlq.error") or b"").decode()
    assert "too large" in error.lower() and "DecodeError" in error  # why it was refused, and why it failed
