"""Running a consumer service: logging, metrics, signals, and the one consumer loop."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from types import FrameType

from shared.avro import codec
from shared.kafka.config import consumer_config, producer_config
from shared.kafka.consumer import ConsumerRunner, Handler
from shared.kafka.producer import SyncProducer
from shared.metrics import serve_metrics
from shared.settings import Settings

log = logging.getLogger(__name__)


def stop_on_signals() -> threading.Event:
    """SIGTERM and SIGINT set the returned event; the loop finishes its batch and exits."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop


def run_consumer(settings: Settings, *, service: str, group_id: str, topics: Sequence[str],
                 handler: Handler, due_header: str | None = None) -> None:
    serve_metrics(settings.metrics_port)
    runner = ConsumerRunner(
        service=service,
        consumer_config=consumer_config(settings, group_id),
        topics=topics,
        handler=handler,
        producer=SyncProducer(producer_config(settings)),
        codec=codec(),
        batch_size=settings.consumer_batch_size,
        due_header=due_header,
    )
    runner.run(stop_on_signals())
