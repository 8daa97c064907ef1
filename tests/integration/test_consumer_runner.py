"""ConsumerRunner against a real broker: the at-least-once checkpoint, dead letters, retries, stopping.

End offsets come from the test producer's delivery reports, not ListOffsets: the bundled Tansu broker
answers ListOffsets(latest) with the last *batch's* base offset + 1, which under-counts batched writes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Self

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from sqlalchemy.exc import OperationalError

from shared.avro import codec
from shared.kafka.config import consumer_config, producer_config
from shared.kafka.consumer import ConsumerRunner, Handler, TransientError, message_headers
from shared.kafka.producer import SyncProducer
from shared.kafka.records import Headers, InRecord, OutRecord, header
from shared.service import TRANSIENT_ERRORS
from shared.settings import Settings
from tests.support.topic_reading import read_all

pytestmark = pytest.mark.timeout(60)

SERVICE = "test-runner"
SESSION_TIMEOUT_S = Settings().kafka_session_timeout_ms / 1000
# A join on this broker takes ~session.timeout/2; this bounds waits for a runner's first batch.
JOIN_TIMEOUT_S = 20.0

Offsets = dict[int, int]  # partition -> next offset to read


# --- helpers ---------------------------------------------------------------------------------------


def create_topics(bootstrap: str, *topics: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics])
    for future in futures.values():
        future.result(timeout=30)


def click(key: str) -> bytes:
    return codec().encode("apprefer.Click", {"click_key": key, "app_id": "app-1", "clicked_at_ms": 1_700_000_000_000})


def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes, Headers]],
            partition: int | None = None) -> Offsets:
    """Produces and waits for every ack; returns the end offset of each partition written."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    ends: Offsets = {}
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
        else:
            p, o = msg.partition() or 0, msg.offset() or 0
            ends[p] = max(ends.get(p, 0), o + 1)

    for key, value, headers in records:
        # -1 is librdkafka's "unassigned": the partitioner picks by key.
        producer.produce(topic, value, key, -1 if partition is None else partition,
                         on_delivery=on_delivery, headers=headers)
    assert producer.flush(30) == 0 and not errors, errors
    return ends


def produce_clicks(bootstrap: str, topic: str, keys: Iterable[str]) -> Offsets:
    return produce(bootstrap, topic, ((k.encode(), click(k), []) for k in keys))


def click_keys(messages: Iterable[Message]) -> list[str]:
    return [codec().decode_as("apprefer.Click", m.value())["click_key"] for m in messages]


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> Offsets:
    """The group's committed offsets; partitions never committed are left out."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in tps if tp.offset >= 0}
    finally:
        consumer.close()


def next_offsets(batches: Iterable[list[InRecord]]) -> Offsets:
    offsets: Offsets = {}
    for batch in batches:
        for r in batch:
            offsets[r.partition] = max(offsets.get(r.partition, 0), r.offset + 1)
    return offsets


def make_runner(bootstrap: str, group: str, topic: str, handler: Handler, *, batch_size: int = 500,
                transient_retry_seconds: float = 120.0,
                transient: tuple[type[Exception], ...] = ()) -> ConsumerRunner:
    settings = Settings(kafka_bootstrap_servers=bootstrap)
    return ConsumerRunner(
        service=SERVICE,
        consumer_config=consumer_config(settings, group),
        topics=[topic],
        handler=handler,
        producer=SyncProducer(producer_config(settings)),
        codec=codec(),
        batch_size=batch_size,
        poll_timeout=0.1,  # how long a stop request can go unnoticed
        transient_retry_seconds=transient_retry_seconds,
        transient=transient,
    )


class Forwarder:
    """A handler that copies each record to `out` and remembers every batch it was given."""

    def __init__(self, out: str, before: Callable[[int, list[InRecord]], None] | None = None) -> None:
        self.out = out
        self.before = before  # called with (call number from 1, batch) before forwarding; may raise
        self.calls: list[list[InRecord]] = []
        self.handled: list[list[InRecord]] = []  # the batches that returned normally
        self.lock = threading.Lock()

    def __call__(self, records: list[InRecord]) -> list[OutRecord]:
        with self.lock:
            self.calls.append(list(records))
            n = len(self.calls)
        if self.before is not None:
            self.before(n, records)
        with self.lock:
            self.handled.append(list(records))
        return [OutRecord(self.out, r.raw_value or b"", r.key) for r in records]

    def handled_keys(self) -> set[str]:
        with self.lock:
            return {r.value["click_key"] for batch in self.handled for r in batch}


class ClicksOnly(Forwarder):
    """A Forwarder that declares the one schema it takes, as the services' handlers do."""

    SCHEMAS = frozenset({"apprefer.Click"})


class RunnerThread:
    def __init__(self, runner: ConsumerRunner) -> None:
        self.runner = runner
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.runner.run(self.stop)
        except BaseException as exc:  # the test inspects it; SystemExit would otherwise vanish silently
            self.error = exc

    def start(self) -> Self:
        self.thread.start()
        return self

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"runner did not return within {timeout}s"

    def stop_and_join(self, timeout: float = 10.0) -> None:
        self.stop.set()
        self.join(timeout)
        assert self.error is None, repr(self.error)


def wait_until(condition: Callable[[], bool], timeout: float = JOIN_TIMEOUT_S, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# --- tests -----------------------------------------------------------------------------------------


def test_happy_path_forwards_everything_and_commits_to_the_end(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic, out, group = unique_name("clicks"), unique_name("out"), unique_name("group")
    create_topics(kafka_bootstrap, topic, out, f"{topic}.dlq", partitions=3)
    keys = {f"c{i}" for i in range(200)}
    ends = produce_clicks(kafka_bootstrap, topic, sorted(keys))
    assert len(ends) == 3 and sum(ends.values()) == 200

    handler = Forwarder(out)
    runner = RunnerThread(make_runner(kafka_bootstrap, group, topic, handler)).start()
    wait_until(lambda: handler.handled_keys() == keys, what="all records handled")
    runner.stop_and_join()

    forwarded = read_all(kafka_bootstrap, out)
    assert sorted(click_keys(forwarded)) == sorted(keys)  # each exactly once
    assert all(m.key() == codec().decode(m.value())[1]["click_key"].encode() for m in forwarded)
    assert read_all(kafka_bootstrap, f"{topic}.dlq") == []
    assert committed(kafka_bootstrap, group, topic, 3) == ends


def test_poison_records_go_to_the_dlq_and_the_rest_of_the_batch_is_processed(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic, out, group = unique_name("clicks"), unique_name("out"), unique_name("group")
    dlq = f"{topic}.dlq"
    # One partition so the poison's offsets are known and everything arrives in one batch.
    create_topics(kafka_bootstrap, topic, out, dlq, partitions=1)
    Record = tuple[bytes | None, bytes, Headers]
    junk: Record = (b"junk-key", b"definitely not avro", [("trace", b"t-junk")])
    poison_value = click("poison")
    records: list[Record] = [(f"c{i}".encode(), click(f"c{i}"), []) for i in range(48)]
    records.insert(10, junk)
    records.insert(30, (b"poison", poison_value, [("trace", b"t-poison")]))
    ends = produce(kafka_bootstrap, topic, records, partition=0)
    assert ends == {0: 50}

    def reject_poison(_n: int, batch: list[InRecord]) -> None:
        if any(r.value["click_key"] == "poison" for r in batch):
            raise ValueError("cannot handle the poison click")

    handler = Forwarder(out, reject_poison)
    runner = RunnerThread(make_runner(kafka_bootstrap, group, topic, handler)).start()
    good = {f"c{i}" for i in range(48)}
    wait_until(lambda: handler.handled_keys() == good, what="all good records handled")
    assert runner.thread.is_alive()  # never crashed
    runner.stop_and_join()
    assert committed(kafka_bootstrap, group, topic, 1) == ends  # past the poison

    # The poison shared a batch with good records, which were then handled one by one.
    poisoned = [b for b in handler.calls if any(r.value["click_key"] == "poison" for r in b)]
    assert len(poisoned[0]) > 1
    assert sorted(click_keys(read_all(kafka_bootstrap, out))) == sorted(good)  # each exactly once

    dead = {m.key(): m for m in read_all(kafka_bootstrap, dlq)}
    assert set(dead) == {b"junk-key", b"poison"}
    for key, value, offset, error in [
        (b"junk-key", junk[1], 10, b"DecodeError: "),
        (b"poison", poison_value, 30, b"ValueError: cannot handle the poison click"),
    ]:
        message = dead[key]
        assert message.value() == value
        headers = message_headers(message)
        assert (header(headers, "dlq.error") or b"").startswith(error), headers
        assert header(headers, "dlq.source_topic") == topic.encode()
        assert header(headers, "dlq.source_partition") == b"0"
        assert header(headers, "dlq.source_offset") == str(offset).encode()
        assert header(headers, "dlq.service") == SERVICE.encode()
        assert header(headers, "trace") == (b"t-junk" if key == b"junk-key" else b"t-poison")  # originals kept


def test_crash_mid_batch_is_redelivered_to_the_next_runner(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic, out, group = unique_name("clicks"), unique_name("out"), unique_name("group")
    create_topics(kafka_bootstrap, topic, out, f"{topic}.dlq", partitions=3)
    keys = {f"c{i}" for i in range(60)}
    ends = produce_clicks(kafka_bootstrap, topic, sorted(keys))

    def crash_on_third(n: int, _batch: list[InRecord]) -> None:
        if n == 3:
            raise SystemExit("simulated process death")  # BaseException: must not be dead-lettered

    first = Forwarder(out, crash_on_third)
    runner = RunnerThread(make_runner(kafka_bootstrap, group, topic, first, batch_size=10)).start()
    runner.join(JOIN_TIMEOUT_S)
    assert isinstance(runner.error, SystemExit)
    assert len(first.calls) == 3 and len(first.handled) == 2
    crashed = first.calls[2]

    # Exactly the two finished batches are committed and forwarded; nothing of the crashed one.
    before = committed(kafka_bootstrap, group, topic, 3)
    assert before == next_offsets(first.handled)
    assert all(r.offset >= before.get(r.partition, 0) for r in crashed)
    forwarded_before = click_keys(read_all(kafka_bootstrap, out))
    assert sorted(forwarded_before) == sorted(r.value["click_key"] for b in first.handled for r in b)
    assert read_all(kafka_bootstrap, f"{topic}.dlq") == []

    second = Forwarder(out)
    runner = RunnerThread(make_runner(kafka_bootstrap, group, topic, second)).start()
    wait_until(lambda: second.handled_keys() | first.handled_keys() == keys, what="the rest handled")
    runner.stop_and_join()

    assert {r.value["click_key"] for r in crashed} <= second.handled_keys()  # re-read
    assert set(click_keys(read_all(kafka_bootstrap, out))) == keys  # nothing lost
    assert committed(kafka_bootstrap, group, topic, 3) == ends


def test_transient_error_retries_the_batch_in_place(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    topic, out, group = unique_name("clicks"), unique_name("out"), unique_name("group")
    create_topics(kafka_bootstrap, topic, out, f"{topic}.dlq", partitions=1)
    keys = {f"c{i}" for i in range(20)}
    ends = produce_clicks(kafka_bootstrap, topic, sorted(keys))

    def flaky(n: int, _batch: list[InRecord]) -> None:
        if n <= 2:
            raise TransientError("database briefly away")

    handler = Forwarder(out, flaky)
    runner = RunnerThread(make_runner(kafka_bootstrap, group, topic, handler, transient_retry_seconds=5)).start()
    wait_until(lambda: handler.handled_keys() == keys, what="all records handled")
    runner.stop_and_join()

    offsets = [[r.offset for r in batch] for batch in handler.calls]
    assert offsets[0] == offsets[1] == offsets[2]  # the same batch, retried whole (not isolated)
    handled = [r.value["click_key"] for batch in handler.handled for r in batch]
    assert sorted(handled) == sorted(keys)  # each handled once
    assert sorted(click_keys(read_all(kafka_bootstrap, out))) == sorted(keys)
    assert read_all(kafka_bootstrap, f"{topic}.dlq") == []
    assert committed(kafka_bootstrap, group, topic, 1) == ends


def test_persistent_transient_error_stops_the_runner_without_committing(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic, out, group = unique_name("clicks"), unique_name("out"), unique_name("group")
    create_topics(kafka_bootstrap, topic, out, f"{topic}.dlq", partitions=1)
    produce_clicks(kafka_bootstrap, topic, [f"c{i}" for i in range(20)])
    first_call: list[float] = []

    def always_down(_n: int, _batch: list[InRecord]) -> None:
        first_call.append(time.monotonic())
        raise TransientError("database down")

    handler = Forwarder(out, always_down)
    runner = RunnerThread(make_runner(kafka_bootstrap, group, topic, handler, transient_retry_seconds=1)).start()
    runner.join(JOIN_TIMEOUT_S)
    gave_up_after = time.monotonic() - first_call[0]

    assert isinstance(runner.error, TransientError)
    assert 1.0 <= gave_up_after < 4.0, gave_up_after
    assert len(handler.calls) > 1 and not handler.handled
    assert committed(kafka_bootstrap, group, topic, 1) == {}
    assert read_all(kafka_bootstrap, out) == []
    assert read_all(kafka_bootstrap, f"{topic}.dlq") == []


def test_stop_finishes_the_batch_in_hand_commits_and_leaves_the_group(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic, out, group = unique_name("clicks"), unique_name("out"), unique_name("group")
    create_topics(kafka_bootstrap, topic, out, f"{topic}.dlq", partitions=3)
    keys = {f"c{i}" for i in range(300)}
    ends = produce_clicks(kafka_bootstrap, topic, sorted(keys))
    stopped_at: list[float] = []
    runner: RunnerThread

    def stop_during_third(n: int, _batch: list[InRecord]) -> None:
        if n == 3:
            runner.stop.set()  # as SIGTERM would, while this batch is in hand
            stopped_at.append(time.monotonic())

    first = Forwarder(out, stop_during_third)
    runner = RunnerThread(make_runner(kafka_bootstrap, group, topic, first, batch_size=20)).start()
    runner.join(JOIN_TIMEOUT_S)
    assert runner.error is None, repr(runner.error)
    assert time.monotonic() - stopped_at[0] < 3.0  # returned promptly

    assert len(first.calls) == 3 and len(first.handled) == 3  # the batch in hand finished, no more
    assert committed(kafka_bootstrap, group, topic, 3) == next_offsets(first.handled)
    assert sorted(click_keys(read_all(kafka_bootstrap, out))) == sorted(first.handled_keys())

    # A member that vanished without leaving would hold its partitions for a session timeout or more.
    second = Forwarder(out)
    started = time.monotonic()
    runner = RunnerThread(make_runner(kafka_bootstrap, group, topic, second)).start()
    wait_until(lambda: bool(second.calls), what="the second runner's first batch")
    assert time.monotonic() - started < SESSION_TIMEOUT_S
    wait_until(lambda: first.handled_keys() | second.handled_keys() == keys, what="the rest handled")
    runner.stop_and_join()

    assert sorted(click_keys(read_all(kafka_bootstrap, out))) == sorted(keys)  # clean hand-over: each once
    assert committed(kafka_bootstrap, group, topic, 3) == ends


def test_records_of_a_schema_the_handler_does_not_declare_are_dead_lettered_by_the_runner(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic, out, group = unique_name("clicks"), unique_name("out"), unique_name("group")
    dlq = f"{topic}.dlq"
    create_topics(kafka_bootstrap, topic, out, dlq, partitions=1)  # one partition: one batch, known offsets
    audit = codec().encode("apprefer.AuditRecord", {"audit_id": "a-1", "app_id": "app-1", "event_id": "e-1",
                                                    "network": "meta", "status": "delivered", "recorded_at_ms": 1})
    Record = tuple[bytes | None, bytes, Headers]
    records: list[Record] = [(f"c{i}".encode(), click(f"c{i}"), []) for i in range(20)]
    records.insert(8, (b"stray", audit, [("trace", b"t-stray")]))  # valid Avro, but not a click
    ends = produce(kafka_bootstrap, topic, records, partition=0)

    handler = ClicksOnly(out)
    runner = RunnerThread(make_runner(kafka_bootstrap, group, topic, handler)).start()
    good = {f"c{i}" for i in range(20)}
    wait_until(lambda: handler.handled_keys() == good, what="all clicks handled")
    wait_until(lambda: committed(kafka_bootstrap, group, topic, 1) == ends, what="offsets committed to the end")
    runner.stop_and_join()

    assert all(r.schema == "apprefer.Click" for batch in handler.calls for r in batch)  # never saw the stray
    assert sorted(click_keys(read_all(kafka_bootstrap, out))) == sorted(good)  # each exactly once
    (letter,) = read_all(kafka_bootstrap, dlq)
    assert (letter.key(), letter.value()) == (b"stray", audit)  # the original bytes, untouched
    headers = message_headers(letter)
    assert header(headers, "dlq.error") == b"unexpected schema apprefer.AuditRecord"
    assert header(headers, "dlq.source_topic") == topic.encode()
    assert header(headers, "dlq.source_partition") == b"0"
    assert header(headers, "dlq.source_offset") == b"8"
    assert header(headers, "dlq.service") == SERVICE.encode()
    assert header(headers, "trace") == b"t-stray"


def test_an_error_of_a_type_given_as_transient_retries_the_batch_in_place(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    """What shared.service gives every consumer: the database's OperationalError, raised by the handler as
    is, is retried like a TransientError (no handler has to translate it)."""
    topic, out, group = unique_name("clicks"), unique_name("out"), unique_name("group")
    create_topics(kafka_bootstrap, topic, out, f"{topic}.dlq", partitions=1)
    keys = {f"c{i}" for i in range(20)}
    ends = produce_clicks(kafka_bootstrap, topic, sorted(keys))

    def database_away(n: int, _batch: list[InRecord]) -> None:
        if n <= 2:
            raise OperationalError("SELECT 1", {}, ConnectionError("server closed the connection unexpectedly"))

    handler = Forwarder(out, database_away)
    runner = RunnerThread(make_runner(kafka_bootstrap, group, topic, handler, transient_retry_seconds=5,
                                      transient=TRANSIENT_ERRORS)).start()
    wait_until(lambda: handler.handled_keys() == keys, what="all records handled")
    runner.stop_and_join()

    offsets = [[r.offset for r in batch] for batch in handler.calls]
    assert offsets[0] == offsets[1] == offsets[2]  # the same batch, retried whole (not isolated)
    assert sorted(click_keys(read_all(kafka_bootstrap, out))) == sorted(keys)
    assert read_all(kafka_bootstrap, f"{topic}.dlq") == []  # not dead-lettered, as an unlisted error would be
    assert committed(kafka_bootstrap, group, topic, 1) == ends
