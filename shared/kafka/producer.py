"""Producers whose delivery reports are awaited: one for asyncio services, one for consumer loops.

confluent-kafka's own AIOProducer has a ~100 ms latency floor and refuses headers, so the async
producer wraps the sync `Producer` with a poll thread and hands delivery reports back to the loop,
one future per batch of records rather than one per record.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from shared.kafka.records import OutRecord


class DeliveryFailed(RuntimeError):
    """The broker did not acknowledge a record."""


class ProducerQueueFull(RuntimeError):
    """librdkafka's local queue is full: the caller should shed load (HTTP 503)."""


class AsyncProducer:
    def __init__(self, config: dict[str, Any]) -> None:
        self._producer = Producer(config)
        self._stopping = threading.Event()
        # Sends whose last report arrived during one poll() are settled with a single wake-up of
        # the event loop, not one per request: under load one poll serves hundreds of reports.
        self._settled: list[Callable[[], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poller = threading.Thread(target=self._poll_forever, name="producer-poll", daemon=True)
        self._poller.start()

    def _poll_forever(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(0.05)
            self._hand_back()

    def _hand_back(self) -> None:
        if not self._settled or self._loop is None:
            return
        settled, self._settled = self._settled, []
        # The loop may be closed during shutdown; the poll thread must survive that.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(_run_all, settled)

    async def send(self, records: Sequence[OutRecord]) -> None:
        """Returns once the broker acknowledged every record; raises DeliveryFailed otherwise."""
        if not records:
            return
        loop = self._loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        pending = len(records)
        errors: list[KafkaError] = []
        abandoned = False  # set when we raise ProducerQueueFull: nobody awaits `done` any more

        def settle() -> None:
            if done.done() or abandoned:
                return
            if errors:
                done.set_exception(DeliveryFailed(str(errors[0])))
            else:
                done.set_result(None)

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            # Reports run inside poll() (the poll thread) or the final flush(), never both at once:
            # no lock needed, and this runs once per record, holding the GIL the event loop wants.
            nonlocal pending
            if err is not None:
                errors.append(err)
            pending -= 1
            if pending == 0:
                self._settled.append(settle)  # handed to the loop after this poll() returns

        for record in records:
            try:
                self._producer.produce(
                    record.topic, record.value, record.key, headers=record.headers, on_delivery=on_delivery
                )
            except BufferError as exc:
                abandoned = True
                # Records already queued will still be delivered; the caller answers 503 and the
                # client retries with the same event ids, which downstream de-duplicates.
                raise ProducerQueueFull(str(exc)) from exc
        await done

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
    """For consumer loops: produce a batch of outputs, then flush and check every report."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._producer = Producer(config)
        self._errors: list[KafkaError] = []

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._errors.append(err)

    def send_all(self, records: Sequence[OutRecord], timeout: float = 60.0) -> None:
        self._errors.clear()
        for record in records:
            while True:
                try:
                    self._producer.produce(
                        record.topic, record.value, record.key, headers=record.headers,
                        on_delivery=self._on_delivery,
                    )
                    break
                except BufferError:
                    self._producer.poll(0.1)  # queue full: let deliveries drain, then retry
        remaining = self._producer.flush(timeout)
        if remaining:
            raise DeliveryFailed(f"{remaining} records not acknowledged within {timeout}s")
        if self._errors:
            raise DeliveryFailed(str(self._errors[0]))

    def close(self, timeout: float = 10.0) -> None:
        self._producer.flush(timeout)
