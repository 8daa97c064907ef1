"""The one consumer loop every service runs.

At its core it is the canonical at-least-once consumer: poll a batch, process it, produce the
outputs and wait for their acknowledgements, then commit the offsets. Around that core:
undecodable records, records of a schema the handler does not take, and records the handler
rejects go to `<topic>.dlq` with the error and their provenance (never a crash loop); a
`TransientError`, or an error of a type the runner was given as transient (the database's, from
shared.service), retries the batch in place; an output the broker refuses for good (too large) is
dead-lettered as the input it came from, while the batch's other outputs are produced once;
outputs the broker does not acknowledge are sent again until it does; SIGTERM finishes the batch
in hand, commits, and leaves the group. A fatal consumer error ends the process (non-zero), so
its supervisor starts a fresh one.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, stop_when_event_set, wait_exponential

from shared.avro import AvroCodec, DecodeError
from shared.kafka.producer import DeliveryFailed, SyncProducer
from shared.kafka.records import Headers, InRecord, OutRecord, dead_letter, dead_letter_of, undeliverable
from shared.metrics import (
    BATCH_SECONDS,
    CONSUMER_LAG,
    DEAD_LETTERS,
    OLDEST_UNPROCESSED_AGE,
    RECORDS_DROPPED,
    RECORDS_PROCESSED,
)

LAG_INTERVAL_SECONDS = 5.0

log = logging.getLogger(__name__)

# A handler turns a batch of decoded records into the records to produce. It may write to the
# database (idempotently: the batch can be delivered again after a crash) and may return dead
# letters for records it rejects (see `dead_letter_of`). Raising TransientError (or one of the
# runner's `transient` types) retries the batch; any other exception isolates the failing record by
# running the records one at a time. A handler that takes only some schemas says which in a
# `SCHEMAS` attribute (a frozenset of schema names): the runner dead-letters records of any other
# schema ("unexpected schema <name>") and never shows them to it.
Handler = Callable[[list[InRecord]], list[OutRecord]]


def expected_schemas(handler: Handler) -> frozenset[str] | None:
    """The schemas the handler declares it takes (its `SCHEMAS`), None when it takes any."""
    schemas = getattr(handler, "SCHEMAS", None)
    return frozenset(schemas) if schemas is not None else None


def message_headers(message: Message) -> Headers:
    headers = message.headers()
    if isinstance(headers, dict):
        return list(headers.items())
    return list(headers or [])


def _due_ms(message: Message, header_name: str) -> int | None:
    for key, value in message_headers(message):
        if key == header_name and value is not None:
            try:
                return int(value)
            except ValueError:
                return None  # a garbled due time is treated as due: the handler will see the record
    return None


class TransientError(RuntimeError):
    """A failure worth retrying as is: a database or dependency that is briefly unavailable."""


class PoisonRecord(ValueError):
    """A record that can never be processed; it goes to the dead-letter topic."""


class ConsumerRunner:
    def __init__(
        self,
        *,
        service: str,
        consumer_config: dict[str, Any],
        topics: Sequence[str],
        handler: Handler,
        producer: SyncProducer,
        codec: AvroCodec,
        batch_size: int = 500,
        poll_timeout: float = 0.05,  # consume() waits this long for a full batch: keep latency low
        transient_retry_seconds: float = 120.0,
        due_header: str | None = None,
        max_record_bytes: int = 1_000_000,
        transient: tuple[type[Exception], ...] = (),
    ) -> None:
        self.service = service
        self._consumer = Consumer(consumer_config)
        self._topics = list(topics)
        self._handler = handler
        self._schemas = expected_schemas(handler)
        # TransientError always; besides, what the handler's dependencies raise when briefly away
        # (shared.service passes the database's OperationalError): this module knows only the broker.
        self._transient: tuple[type[Exception], ...] = (TransientError, *transient)
        self._producer = producer
        self._codec = codec
        self._batch_size = batch_size
        self._poll_timeout = poll_timeout
        self._transient_retry_seconds = transient_retry_seconds
        # Records carrying this header (epoch ms) are not handled before that time: their
        # partition is paused from them on and resumed when the head is due (retry topics).
        self._due_header = due_header
        self._paused_until: dict[tuple[str, int], int] = {}
        self._max_record_bytes = max_record_bytes
        self._stop = threading.Event()
        self._lag_measured_at = 0.0
        self._fatal: str | None = None

    def health(self) -> None:
        """For readiness: raises while the loop cannot make progress (outputs unacknowledged, a
        producer being replaced, a fatal consumer error on the way out)."""
        if self._fatal is not None:
            raise KafkaException(self._fatal)
        self._producer.health()

    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        self._consumer.subscribe(self._topics)
        log.info("consuming", extra={"topics": self._topics})
        dependency_down: tuple[type[Exception], ...] = (*self._transient, DeliveryFailed)
        try:
            while not stop.is_set():
                self._resume_due_partitions()
                messages = self._consumer.consume(self._batch_size, self._poll_timeout)
                if messages:
                    self.process_batch(messages)
        except dependency_down:
            if not stop.is_set():
                raise
            log.info("stopped while a dependency was down; the uncommitted batch will be redelivered")
        finally:
            self._consumer.close()  # leaves the group now instead of after session.timeout.ms
            self._producer.close()
            log.info("stopped")

    def _record_lag(self) -> None:
        """Records behind the end of each assigned partition, from the offsets librdkafka already
        has (no broker round trip), at most every few seconds."""
        now = time.monotonic()
        if now - self._lag_measured_at < LAG_INTERVAL_SECONDS:
            return
        self._lag_measured_at = now
        try:
            positions = self._consumer.position(self._consumer.assignment())
        except KafkaException:
            return
        for tp in positions:
            _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if high is not None and high >= 0 and tp.offset is not None and tp.offset >= 0:
                CONSUMER_LAG.labels(self.service, tp.topic, str(tp.partition)).set(max(0, high - tp.offset))

    def process_batch(self, messages: list[Message]) -> None:
        started = time.monotonic()
        timestamps = [m.timestamp()[1] for m in messages if m.error() is None and m.timestamp()[1] > 0]
        if timestamps:
            OLDEST_UNPROCESSED_AGE.labels(self.service).set(max(0.0, time.time() - min(timestamps) / 1000))
        if self._due_header:
            messages = self._hold_back_not_due(messages)
        records: list[InRecord] = []  # decoded
        expected: list[InRecord] = []  # of those, the ones of a schema the handler takes
        outputs: list[OutRecord] = []
        consumed: list[Message] = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    self._fatal = error.str()
                    log.error("fatal consumer error; exiting so a fresh process takes over",
                              extra={"error": error.str()})
                    raise KafkaException(error)
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error", extra={"error": str(error)})
                continue
            consumed.append(message)
            try:
                record = self._decode(message)
            except DecodeError as exc:
                outputs.append(self._dead_letter_message(message, exc))
                continue
            records.append(record)
            if self._schemas is None or record.schema in self._schemas:
                expected.append(record)
            else:
                outputs.append(self._dead_letter_unexpected(record))
        outputs += self._handle(expected)
        # The checkpoint, in this order: outputs acknowledged (or dead-lettered), then offsets committed.
        outputs += self._send(outputs)
        self._commit(consumed)
        for topic, count in Counter(record.topic for record in records).items():
            RECORDS_PROCESSED.labels(self.service, topic).inc(count)
        for topic, count in Counter(o.topic for o in outputs if o.topic.endswith(".dlq")).items():
            DEAD_LETTERS.labels(self.service, topic).inc(count)
        BATCH_SECONDS.labels(self.service).observe(time.monotonic() - started)
        OLDEST_UNPROCESSED_AGE.labels(self.service).set(0.0)
        self._record_lag()

    def _send(self, outputs: list[OutRecord]) -> list[OutRecord]:
        """Produces the outputs; each one the broker refuses for good is replaced by a dead letter
        that fits (returned, for the metrics). Neither a refusal nor a broker away stops the loop:
        unacknowledged records are sent again until acknowledged, or until we are asked to stop."""
        refused = self._producer.deliver(outputs, self._stop)
        if not refused:
            return []
        letters = []
        for refusal in refused:
            log.error("output refused by the broker; dead-lettering its input",
                      extra={"topic": refusal.record.topic, "error": refusal.reason})
            letters.append(undeliverable(refusal.record, refusal.reason, self.service, self._max_record_bytes))
        for lost in self._producer.deliver(letters, self._stop):
            # Only a broker limit below the excerpt size gets here: say so loudly, and move on.
            log.error("dead letter refused too; record dropped", extra={"topic": lost.record.topic,
                                                                       "error": lost.reason})
            RECORDS_DROPPED.labels(self.service, lost.record.topic).inc()
        return letters

    def _hold_back_not_due(self, messages: list[Message]) -> list[Message]:
        """Drops each partition's messages from its first not-yet-due one on; that partition is
        rewound to it and paused until it is due, so waiting never blocks the loop (no sleep)."""
        now_ms = int(time.time() * 1000)
        held: dict[tuple[str, int], tuple[int, int]] = {}
        ready: list[Message] = []
        for message in messages:
            tp = (message.topic() or "", message.partition() or 0)
            if tp in held:
                continue
            due_ms = _due_ms(message, self._due_header or "")
            if message.error() is None and due_ms is not None and due_ms > now_ms:
                held[tp] = (message.offset() or 0, due_ms)
            else:
                ready.append(message)
        for (topic, partition), (offset, due_ms) in held.items():
            self._consumer.pause([TopicPartition(topic, partition)])
            self._consumer.seek(TopicPartition(topic, partition, offset))
            self._paused_until[(topic, partition)] = due_ms
        return ready

    def _resume_due_partitions(self) -> None:
        if not self._paused_until:
            return
        now_ms = int(time.time() * 1000)
        due = [tp for tp, until in self._paused_until.items() if until <= now_ms]
        for topic, partition in due:
            del self._paused_until[(topic, partition)]
            # Revoked meanwhile? Its new owner starts from the committed offset anyway.
            with contextlib.suppress(KafkaException):
                self._consumer.resume([TopicPartition(topic, partition)])

    def _decode(self, message: Message) -> InRecord:
        schema, value = self._codec.decode(message.value())
        return InRecord(
            topic=message.topic() or "",
            partition=message.partition() or 0,
            offset=message.offset() or 0,
            key=message.key(),
            raw_value=message.value(),
            headers=message_headers(message),
            schema=schema,
            value=value,
        )

    def _dead_letter_message(self, message: Message, error: BaseException) -> OutRecord:
        log.warning("dead-lettering undecodable record", extra={"topic": message.topic(), "error": str(error)})
        return dead_letter(
            topic=message.topic() or "",
            partition=message.partition() or 0,
            offset=message.offset() or 0,
            key=message.key(),
            value=message.value(),
            headers=message_headers(message),
            error=error,
            service=self.service,
        )

    def _dead_letter_unexpected(self, record: InRecord) -> OutRecord:
        log.warning("dead-lettering record of an unexpected schema", extra={"topic": record.topic,
                                                                          "schema": record.schema})
        return dead_letter_of(record, f"unexpected schema {record.schema}", self.service)

    def _handle(self, records: list[InRecord]) -> list[OutRecord]:
        if not records:
            return []
        try:
            outputs = self._with_transient_retry(records)
        except self._transient:
            raise  # retries exhausted: exit, let the supervisor restart us, nothing committed
        except Exception as exc:
            if len(records) == 1:
                log.warning("dead-lettering record", extra={"topic": records[0].topic, "error": str(exc)})
                return [dead_letter_of(records[0], exc, self.service)]
            log.warning("batch failed; isolating the failing records", extra={"error": str(exc)})
        else:
            if len(records) == 1:
                for output in outputs:  # handled alone: every output is this record's
                    output.origin = output.origin or records[0]
            return outputs
        return [output for record in records for output in self._handle([record])]

    def _with_transient_retry(self, records: list[InRecord]) -> list[OutRecord]:
        for attempt in Retrying(
            retry=retry_if_exception_type(self._transient),
            wait=wait_exponential(multiplier=0.2, max=10),
            # A stop request ends the waiting too: nothing was committed, the batch comes back later.
            stop=stop_after_delay(self._transient_retry_seconds) | stop_when_event_set(self._stop),
            reraise=True,
        ):
            with attempt:
                return self._handler(records)
        raise AssertionError("unreachable")

    def _commit(self, messages: list[Message]) -> None:
        if not messages:
            return
        next_offsets: dict[tuple[str, int], int] = {}
        for message in messages:
            tp = (message.topic() or "", message.partition() or 0)
            next_offsets[tp] = max(next_offsets.get(tp, 0), (message.offset() or 0) + 1)
        offsets = [TopicPartition(t, p, o) for (t, p), o in next_offsets.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # A rebalance took the partitions away: the new owner re-reads from the last commit,
            # which is at-least-once by design, and the effects are idempotent.
            log.warning("commit failed; records will be redelivered", extra={"error": str(exc)})
