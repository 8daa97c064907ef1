"""Dead letters for SREs: list, show and replay what sits in a `<topic>.dlq`.

Reading never joins a consumer group (partitions are assigned and read from the start to the
end offsets seen when the read began), so listing changes nothing. A replay re-publishes each
matching record to the topic it came from, with its original key and headers plus `replay.*`
headers, waits for the broker's acknowledgement, and only then records it in `dlq_replays`, so a
second replay skips it and a crash mid-way replays at most the unrecorded tail again.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ClusterMetadata

from shared.avro import AvroCodec, DecodeError
from shared.kafka.consumer import message_headers
from shared.kafka.producer import SyncProducer
from shared.kafka.records import Headers, OutRecord, header

REPLAY_HEADERS = ("replay.from", "replay.at_ms")
# How long a tool waits for a broker's first answer. librdkafka gives up on a refused connection
# in well under a second (all brokers down); this bounds the wait for an address that never answers.
METADATA_TIMEOUT_SECONDS = 5.0
# librdkafka's own log lines (a few per second while no broker answers) go to Python logging under
# this name: a service's JSON log shows them, a command line without logging configured drops them.
CLIENT_LOG = logging.getLogger("apprefer.librdkafka")
CLIENT_LOG.addHandler(logging.NullHandler())


class BrokerUnreachable(RuntimeError):
    """No broker of `bootstrap` answered a metadata request in time."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(f"no Kafka broker answered at {bootstrap}")
        self.bootstrap = bootstrap


class DeadLetterReadError(RuntimeError):
    """A broker answered, then a read of a dead-letter topic failed."""


class _BrokerWatch:
    """A client's error_cb: notes librdkafka's "all brokers are down", which comes long before a timeout."""

    def __init__(self) -> None:
        self.all_down = False

    def __call__(self, error: KafkaError) -> None:
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self.all_down = True


def tool_client_config(bootstrap: str, **overrides: Any) -> tuple[dict[str, Any], _BrokerWatch]:
    """The config of a command-line tool's client, quiet on stderr, and the watch `cluster_metadata` needs."""
    watch = _BrokerWatch()
    return {"bootstrap.servers": bootstrap, "logger": CLIENT_LOG, "error_cb": watch, **overrides}, watch


def cluster_metadata(client: Consumer | AdminClient, watch: _BrokerWatch, bootstrap: str, topic: str | None = None,
             timeout: float = METADATA_TIMEOUT_SECONDS) -> ClusterMetadata:
    """The cluster's (or one topic's) metadata; BrokerUnreachable once every broker refused or `timeout` passed."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.list_topics(topic, timeout=max(0.1, min(0.5, deadline - time.monotonic())))
        except KafkaException:
            client.poll(0)  # serves error_cb, which learns whether every broker is down
            if watch.all_down or time.monotonic() >= deadline:
                raise BrokerUnreachable(bootstrap) from None


def check_broker(bootstrap: str, timeout: float = METADATA_TIMEOUT_SECONDS) -> None:
    """Raises BrokerUnreachable unless a broker of `bootstrap` answers within `timeout`."""
    config, watch = tool_client_config(bootstrap)
    cluster_metadata(AdminClient(config), watch, bootstrap, timeout=timeout)


@dataclass(slots=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Headers
    timestamp_ms: int
    record: dict[str, Any] | None = None  # decoded, when the bytes are a known Avro record
    schema: str | None = None

    @property
    def position(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    @property
    def error(self) -> str:
        return _text(header(self.headers, "dlq.error"))

    @property
    def failed_at_ms(self) -> int:
        try:
            return int(_text(header(self.headers, "dlq.failed_at_ms")) or self.timestamp_ms)
        except ValueError:
            return self.timestamp_ms

    @property
    def source_topic(self) -> str:
        return _text(header(self.headers, "dlq.source_topic")) or self.topic.removesuffix(".dlq")

    @property
    def app_id(self) -> str | None:
        return (self.record or {}).get("app_id")

    @property
    def event_id(self) -> str | None:
        return (self.record or {}).get("event_id")

    def summary(self) -> dict[str, Any]:
        return {"position": self.position, "topic": self.topic, "partition": self.partition, "offset": self.offset,
                "failed_at_ms": self.failed_at_ms, "app_id": self.app_id, "event_id": self.event_id,
                "network": (self.record or {}).get("network"), "error": self.error,
                "source_topic": self.source_topic, "service": _text(header(self.headers, "dlq.service"))}


@dataclass(frozen=True, slots=True)
class DlqFilter:
    app_id: str | None = None
    event_id: str | None = None
    error_contains: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    positions: frozenset[str] = field(default_factory=frozenset)

    def matches(self, letter: DeadLetter) -> bool:
        return (
            (self.app_id is None or letter.app_id == self.app_id)
            and (self.event_id is None or letter.event_id == self.event_id)
            and (self.error_contains is None or self.error_contains.lower() in letter.error.lower())
            and (self.since_ms is None or letter.failed_at_ms >= self.since_ms)
            and (self.until_ms is None or letter.failed_at_ms <= self.until_ms)
            and (not self.positions or letter.position in self.positions)
        )


def _text(value: bytes | None) -> str:
    return value.decode("utf-8", "replace") if value else ""


def read_dead_letters(bootstrap: str, topic: str, codec: AvroCodec,
                      timeout: float = METADATA_TIMEOUT_SECONDS) -> Iterator[DeadLetter]:
    """Every record of `topic` up to the end offsets at the start of the read; BrokerUnreachable when
    no broker answers within `timeout`."""
    config, watch = tool_client_config(bootstrap, **{"group.id": "apprefer-dlq-reader", "enable.auto.commit": False,
                                                     "auto.offset.reset": "earliest"})
    consumer = Consumer(config)
    try:
        topic_metadata = cluster_metadata(consumer, watch, bootstrap, topic, timeout).topics.get(topic)
        if topic_metadata is None or topic_metadata.error is not None:
            return
        ends = {}
        for partition in topic_metadata.partitions:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
            ends[partition] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        remaining = {p for p, high in ends.items() if high > 0}
        last_offset: dict[int, int] = {}
        idle_since = time.monotonic()
        # Watermarks can under-report on some brokers, so stop on reaching them *or* when idle.
        while remaining and time.monotonic() - idle_since < 2.0:
            messages = consumer.consume(500, 0.3)
            if messages:
                idle_since = time.monotonic()
            for message in messages:
                if message.error():
                    continue
                partition, offset = message.partition() or 0, message.offset() or 0
                last_offset[partition] = offset
                if offset + 1 >= ends.get(partition, 0):
                    remaining.discard(partition)
                yield _letter(message, codec)
    except KafkaException as exc:
        raise DeadLetterReadError(f"cannot read {topic} from {bootstrap}: {exc}") from exc
    finally:
        consumer.close()


def _letter(message: Any, codec: AvroCodec) -> DeadLetter:
    letter = DeadLetter(
        topic=message.topic(), partition=message.partition(), offset=message.offset(), key=message.key(),
        value=message.value() or b"", headers=message_headers(message), timestamp_ms=message.timestamp()[1],
    )
    # An undecodable record is still listed, shown and replayable as raw bytes.
    with contextlib.suppress(DecodeError):
        letter.schema, letter.record = codec.decode(letter.value)
    return letter


def replay_record(letter: DeadLetter, codec: AvroCodec) -> OutRecord:
    """The record to publish again: original key and headers (minus the DLQ's and earlier replay
    markers), a fresh retry budget for forwarding jobs, and where it was replayed from."""
    value = letter.value
    if letter.schema == "apprefer.ForwardJob" and letter.record is not None:
        value = codec.encode("apprefer.ForwardJob", {**letter.record, "attempt": 0, "first_attempt_ms": None})
    headers = [(k, v) for k, v in letter.headers
               if not k.startswith(("dlq.", "retry.")) and k not in REPLAY_HEADERS]
    headers += [("replay.from", letter.position.encode()), ("replay.at_ms", str(int(time.time() * 1000)).encode())]
    target = letter.source_topic.removesuffix(".retry")
    return OutRecord(topic=target, key=letter.key, value=value, headers=headers)


def replay(letters: list[DeadLetter], producer: SyncProducer, codec: AvroCodec,
           on_published: Callable[[list[tuple[DeadLetter, OutRecord]]], None],
           batch_size: int = 500, progress: Callable[[int], None] | None = None) -> int:
    """Publishes in batches; `on_published` records each acknowledged batch before the next."""
    published = 0
    for start in range(0, len(letters), batch_size):
        batch = [(letter, replay_record(letter, codec)) for letter in letters[start:start + batch_size]]
        producer.send_all([record for _, record in batch])
        on_published(batch)
        published += len(batch)
        if progress:
            progress(len(batch))
    return published


def dead_letter_topics(network: str | None = None, topic: str | None = None) -> list[str]:
    """The DLQ topics to look at: one network's, one named topic's, or every one."""
    from shared.kafka.topics import CONSUMED, dlq, forward_topic
    from shared.networks.registry import registry

    if topic:
        return [topic if topic.endswith(".dlq") else dlq(topic)]
    if network:
        return [dlq(forward_topic(network))]
    return [dlq(t) for t in CONSUMED] + [dlq(forward_topic(n)) for n in registry().names]


def find_dead_letters(bootstrap: str, topics: list[str], letter_filter: DlqFilter, codec: AvroCodec
                      ) -> list[DeadLetter]:
    return [letter for topic in topics for letter in read_dead_letters(bootstrap, topic, codec)
            if letter_filter.matches(letter)]
