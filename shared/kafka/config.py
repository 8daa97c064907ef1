"""librdkafka configuration, built from Settings in one place."""

from __future__ import annotations

from typing import Any

from shared.settings import Settings


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        # Durable ack: every in-sync replica has the record, and retries cannot duplicate it.
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": settings.producer_linger_ms,
        "queue.buffering.max.messages": settings.producer_queue_max_messages,
        "message.timeout.ms": settings.producer_delivery_timeout_ms,
        "compression.type": "lz4",
        "message.max.bytes": settings.kafka_max_record_bytes,
    }
    config.update(overrides)
    return config


def consumer_config(settings: Settings, group_id: str, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "group.id": group_id,
        "auto.offset.reset": "earliest",
        # At-least-once: we store offsets ourselves after the outputs are flushed, and commit them.
        "enable.auto.offset.store": False,
        "enable.auto.commit": False,
        "session.timeout.ms": settings.kafka_session_timeout_ms,
        "heartbeat.interval.ms": max(500, settings.kafka_session_timeout_ms // 6),
        "max.poll.interval.ms": 300_000,
    }
    config.update(overrides)
    return config
