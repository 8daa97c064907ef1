"""Running a consumer service: logging, metrics, signals, and the one consumer loop."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from types import FrameType

from confluent_kafka.admin import AdminClient
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from shared.avro import codec
from shared.health import Check, serve_health
from shared.kafka.config import consumer_config, producer_config
from shared.kafka.consumer import ConsumerRunner, Handler
from shared.kafka.producer import SyncProducer
from shared.runtime import settle_heap
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


# What a consumer's dependencies raise when briefly away: the batch is retried in place, as for a
# TransientError. OperationalError is the database's (a connection dropped or refused, a failover).
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (OperationalError,)


def run_consumer(settings: Settings, *, service: str, group_id: str, topics: Sequence[str],
                 handler: Handler, due_header: str | None = None, engine: Engine | None = None,
                 transient: tuple[type[Exception], ...] = TRANSIENT_ERRORS) -> None:
    """Runs `handler` in the consumer loop until SIGTERM; the records of a schema it does not declare
    (its SCHEMAS) are dead-lettered by the loop, and a `transient` error retries the batch."""
    runner = ConsumerRunner(
        service=service,
        consumer_config=consumer_config(settings, group_id),
        topics=topics,
        handler=handler,
        producer=SyncProducer(producer_config(settings), service),
        codec=codec(),
        batch_size=settings.consumer_batch_size,
        due_header=due_header,
        max_record_bytes=settings.kafka_max_record_bytes,
        transient=transient,
    )
    if settings.metrics_port:
        # A client of its own: the consumer's handle is busy in consume() on the main thread.
        admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
        # The loop's own state first: a stalled or replaced producer fails readiness at once.
        checks: dict[str, Check] = {"pipeline": runner.health, "broker": lambda: _check_broker(admin)}
        if engine is not None:
            checks["database"] = lambda: _ping(engine)
        try:
            serve_health(settings.metrics_port, checks, settings.metrics_host)
        except OSError as exc:  # a taken port must not stop the consumer itself
            log.error("health endpoint not started", extra={"host": settings.metrics_host,
                                                            "port": settings.metrics_port, "error": str(exc)})
    settle_heap()
    runner.run(stop_on_signals())


def _check_broker(admin: AdminClient) -> None:
    admin.list_topics(timeout=2.0)


def _ping(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
