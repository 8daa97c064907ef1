"""The records a consumer handler receives and returns, and the dead-letter envelope."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

# confluent-kafka gives header values as bytes (or None); we write bytes.
Headers = list[tuple[str, str | bytes | None]]


@dataclass(slots=True)
class OutRecord:
    topic: str
    value: bytes
    key: bytes | None = None
    headers: Headers = field(default_factory=list)


@dataclass(slots=True)
class InRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    raw_value: bytes | None
    headers: Headers
    schema: str
    value: dict[str, Any]


def header(headers: Headers | None, name: str) -> bytes | None:
    for key, value in headers or ():
        if key == name:
            return value.encode() if isinstance(value, str) else value
    return None


def dead_letter(
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: Headers | None,
    error: BaseException | str,
    service: str,
) -> OutRecord:
    """The original bytes, untouched, on `<topic>.dlq` with why and where it failed in headers."""
    reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    kept = [(k, v) for k, v in headers or () if not k.startswith("dlq.")]
    kept += [
        ("dlq.error", reason[:2000].encode()),
        ("dlq.source_topic", topic.encode()),
        ("dlq.source_partition", str(partition).encode()),
        ("dlq.source_offset", str(offset).encode()),
        ("dlq.service", service.encode()),
        ("dlq.failed_at_ms", str(int(time.time() * 1000)).encode()),
    ]
    return OutRecord(topic=f"{topic}.dlq", key=key, value=value or b"", headers=kept)


def dead_letter_of(record: InRecord, error: BaseException | str, service: str) -> OutRecord:
    return dead_letter(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.raw_value,
        headers=record.headers,
        error=error,
        service=service,
    )
