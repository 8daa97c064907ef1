"""Producers whose delivery reports are awaited: one for asyncio services, one for consumer loops.

confluent-kafka's own AIOProducer has a ~100 ms latency floor and refuses headers, so the async
producer wraps the sync `Producer` with a poll thread and hands delivery reports back to the loop,
one future per batch of records rather than one per record.

Every delivery error is one of three kinds (`error_kind`), and each kind costs only itself:
- "record": this record can never be written (too large, invalid). The caller gets it back
  (`Refused`, `RecordRefused`) to dead-letter or answer 413; the rest of the batch is unaffected.
- "client": the producer instance is unusable (a fatal error, or the broker fencing the
  idempotent producer after a stall). The instance is replaced by a new one and the records are
  sent again; until then `health()` fails, so readiness tells the truth.
- "transient": the broker is away or slow. Consumer loops send just those records again, with
  backoff, until they are acknowledged or the loop is asked to stop; the gateway answers 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from shared.kafka.records import OutRecord
from shared.metrics import PRODUCERS_REPLACED

log = logging.getLogger(__name__)

ErrorKind = Literal["record", "client", "transient"]

# The record itself is the problem: sending it again can only fail again.
_RECORD_ERRORS = frozenset({
    KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE, KafkaError.RECORD_LIST_TOO_LARGE,
    KafkaError.INVALID_MSG, KafkaError.INVALID_RECORD,
})
# The producer instance is the problem. PRODUCER_FENCED is what the bundled broker answers an
# idempotent producer that bumped its epoch after timed-out records; librdkafka does not flag it
# fatal, and the instance never recovers on its own.
_CLIENT_ERRORS = frozenset({
    KafkaError._FATAL, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH,
    KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, KafkaError.UNKNOWN_PRODUCER_ID, KafkaError._FENCED,
})
# A delivery failure this recent, with no success since, makes the producer unhealthy.
RECENT_FAILURE_SECONDS = 5.0


def error_kind(error: KafkaError) -> ErrorKind:
    code = error.code()
    if code in _RECORD_ERRORS:
        return "record"
    if error.fatal() or code in _CLIENT_ERRORS:
        return "client"
    return "transient"


class DeliveryFailed(RuntimeError):
    """The broker did not acknowledge a record."""


class RecordRefused(DeliveryFailed):
    """The broker (or the client, before sending) refused a record for good, e.g. too large."""


class ProducerQueueFull(RuntimeError):
    """librdkafka's local queue is full: the caller should shed load (HTTP 503)."""


@dataclass(slots=True)
class Refused:
    record: OutRecord
    reason: str


def _refusal_reason(error: KafkaError, record: OutRecord) -> str:
    return f"{error.str()} ({len(record.value):,}-byte record for {record.topic})"


class _Health:
    """What readiness needs to know about a producer: is it usable, and are deliveries working."""

    def __init__(self) -> None:
        self.broken: str | None = None  # why the instance is being replaced
        self.last_failure: tuple[float, str] | None = None
        self.last_success = 0.0

    def failed(self, error: KafkaError) -> None:
        self.last_failure = (time.monotonic(), error.str())

    def check(self) -> None:
        if self.broken is not None:
            raise DeliveryFailed(f"producer unusable, being replaced: {self.broken}")
        failure = self.last_failure
        recent = failure is not None and time.monotonic() - failure[0] < RECENT_FAILURE_SECONDS
        if failure is not None and recent and failure[0] > self.last_success:
            raise DeliveryFailed(f"deliveries failing: {failure[1]}")


class AsyncProducer:
    def __init__(self, config: dict[str, Any]) -> None:
        self._config = config
        self._health = _Health()
        self._producer = self._new_producer()
        self._stopping = threading.Event()
        # Held while a send queues its records and while the instance is swapped: a send never puts
        # records into an instance that was already purged.
        self._swap_lock = threading.Lock()
        # Sends whose last report arrived during one poll() are settled with a single wake-up of
        # the event loop, not one per request: under load one poll serves hundreds of reports.
        self._settled: list[Callable[[], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poller = threading.Thread(target=self._poll_forever, name="producer-poll", daemon=True)
        self._poller.start()

    def _new_producer(self) -> Producer:
        return Producer({**self._config, "error_cb": self._on_client_error})

    def _on_client_error(self, error: KafkaError) -> None:
        if error_kind(error) == "client":
            self._health.broken = error.str()

    def _poll_forever(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(0.05)
            self._hand_back()
            if self._health.broken is not None:
                self._replace()

    def _replace(self) -> None:
        """A new instance takes the next sends; the old one's queued records fail at once (the
        requests holding them answer 503, and their clients retry) instead of timing out."""
        with self._swap_lock:
            old, reason = self._producer, self._health.broken
            self._producer = self._new_producer()
        old.purge()
        old.flush(5.0)  # serves the purged records' reports
        self._hand_back()
        self._health.broken = None
        PRODUCERS_REPLACED.labels("gateway").inc()
        log.warning("producer replaced", extra={"reason": reason})

    def _hand_back(self) -> None:
        if not self._settled or self._loop is None:
            return
        settled, self._settled = self._settled, []
        # The loop may be closed during shutdown; the poll thread must survive that.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(_run_all, settled)

    async def send(self, records: Sequence[OutRecord]) -> None:
        """Returns once the broker acknowledged every record; raises RecordRefused when one can
        never be written, DeliveryFailed otherwise."""
        if not records:
            return
        loop = self._loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        pending = len(records)
        errors: list[KafkaError] = []
        abandoned = False  # set when we raise before the last produce: nobody awaits `done` any more
        health = self._health

        def settle() -> None:
            if done.done() or abandoned:
                return
            refused = [e for e in errors if error_kind(e) == "record"]
            if refused:
                done.set_exception(RecordRefused(refused[0].str()))
            elif errors:
                done.set_exception(DeliveryFailed(errors[0].str()))
            else:
                done.set_result(None)

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            # Reports run inside poll() (the poll thread) or a flush(), one at a time: no lock
            # needed, and this runs once per record, holding the GIL the event loop wants.
            nonlocal pending
            if err is not None:
                errors.append(err)
                kind = error_kind(err)
                if kind != "record":  # a refused record says nothing about the producer's health
                    health.failed(err)
                if kind == "client":
                    health.broken = err.str()
            pending -= 1
            if pending == 0:
                if not errors:
                    health.last_success = time.monotonic()
                self._settled.append(settle)  # handed to the loop after this poll() returns

        with self._swap_lock:
            producer = self._producer
            for record in records:
                try:
                    producer.produce(
                        record.topic, record.value, record.key, headers=record.headers, on_delivery=on_delivery
                    )
                except BufferError as exc:
                    abandoned = True
                    # Records already queued will still be delivered; the caller answers 503 and the
                    # client retries with the same event ids, which downstream de-duplicates.
                    raise ProducerQueueFull(str(exc)) from exc
                except KafkaException as exc:
                    abandoned = True
                    error: KafkaError = exc.args[0]
                    if error_kind(error) == "record":
                        raise RecordRefused(_refusal_reason(error, record)) from exc
                    health.failed(error)
                    if error_kind(error) == "client":
                        health.broken = error.str()
                    raise DeliveryFailed(error.str()) from exc
        await done

    def health(self) -> None:
        """Raises while the producer is being replaced or its deliveries are failing."""
        self._health.check()

    def check_broker(self, timeout: float = 2.0) -> None:
        """Raises when no broker answers a metadata request (for readiness probes)."""
        self._producer.list_topics(timeout=timeout)

    def queue_length(self) -> int:
        return len(self._producer)

    def close(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._poller.join(timeout=1.0)
        self._producer.flush(timeout)
        self._hand_back()


def _run_all(callbacks: list[Callable[[], None]]) -> None:
    for callback in callbacks:
        callback()


class SyncProducer:
    """For consumer loops: produce a batch of outputs, wait for every report, and deal with each
    failed record by its kind (see the module docstring)."""

    def __init__(self, config: dict[str, Any], service: str = "") -> None:
        self._config = config
        self._service = service
        self._health = _Health()
        self._producer = self._new_producer()
        self._stalled_since: float | None = None

    def _new_producer(self) -> Producer:
        return Producer({**self._config, "error_cb": self._on_client_error})

    def _on_client_error(self, error: KafkaError) -> None:
        if error_kind(error) == "client":
            self._health.broken = error.str()

    def deliver(self, records: Sequence[OutRecord], stop: threading.Event | None = None,
                give_up_after: float | None = None) -> list[Refused]:
        """Sends every record; returns the ones refused for good. Records that failed for any other
        reason are sent again (only those: the acknowledged ones are not repeated), on a new
        producer if the old one became unusable, until acknowledged. Raises DeliveryFailed when
        `stop` is set or `give_up_after` seconds pass with records still unacknowledged."""
        refused: list[Refused] = []
        pending = list(records)
        started = time.monotonic()
        backoff = 0.2
        while pending:
            retry: list[OutRecord] = []
            for record, error in self._send_once(pending):
                kind = error_kind(error)
                if kind == "record":
                    refused.append(Refused(record, _refusal_reason(error, record)))
                    continue
                retry.append(record)
                self._health.failed(error)
                if kind == "client":
                    self._health.broken = error.str()
            if self._health.broken is not None:
                self._replace()
            if not retry:
                break
            if self._stalled_since is None:
                self._stalled_since = time.monotonic()
                log.warning("records not acknowledged; sending them again",
                            extra={"records": len(retry), "error": self._health.last_failure})
            waited = time.monotonic() - started
            if give_up_after is not None and waited >= give_up_after:
                raise DeliveryFailed(f"{len(retry)} records not acknowledged within {give_up_after:g}s: "
                                     f"{self._health.last_failure}")
            if stop is not None and stop.wait(backoff):
                raise DeliveryFailed(f"stopped with {len(retry)} records unacknowledged")
            if stop is None:
                time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
            pending = retry
        self._stalled_since = None
        self._health.last_success = time.monotonic()
        return refused

    def send_all(self, records: Sequence[OutRecord], timeout: float = 60.0) -> None:
        """Every record acknowledged within `timeout`, or DeliveryFailed (RecordRefused for a record
        that can never be written). For tools that have nowhere to put a refused record."""
        refused = self.deliver(records, give_up_after=timeout)
        if refused:
            raise RecordRefused(refused[0].reason)

    def _send_once(self, records: list[OutRecord]) -> list[tuple[OutRecord, KafkaError]]:
        failures: list[tuple[OutRecord, KafkaError]] = []

        def reporter(record: OutRecord) -> Callable[[KafkaError | None, Message], None]:
            def on_delivery(err: KafkaError | None, _msg: Message) -> None:
                if err is not None:
                    failures.append((record, err))
            return on_delivery

        producer = self._producer
        for record in records:
            while True:
                try:
                    producer.produce(record.topic, record.value, record.key, headers=record.headers,
                                     on_delivery=reporter(record))
                    break
                except BufferError:
                    producer.poll(0.1)  # queue full: let deliveries drain, then retry
                except KafkaException as exc:
                    failures.append((record, exc.args[0]))
                    break
        # Every queued record gets a report within message.timeout.ms, so this ends.
        while producer.flush(1.0) > 0:
            pass
        return failures

    def _replace(self) -> None:
        reason = self._health.broken
        old, self._producer = self._producer, self._new_producer()
        old.purge()
        old.flush(1.0)
        self._health.broken = None
        PRODUCERS_REPLACED.labels(self._service).inc()
        log.warning("producer replaced", extra={"reason": reason})

    def health(self) -> None:
        """Raises while records wait to be sent again or the producer is being replaced."""
        if self._stalled_since is not None:
            raise DeliveryFailed(f"outputs unacknowledged for {time.monotonic() - self._stalled_since:.0f}s: "
                                 f"{self._health.last_failure[1] if self._health.last_failure else ''}")
        self._health.check()

    def close(self, timeout: float = 10.0) -> None:
        self._producer.flush(timeout)
