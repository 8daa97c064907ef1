"""The records a consumer handler receives and returns, and the dead-letter envelope."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

# confluent-kafka gives header values as bytes (or None); we write bytes.
Headers = list[tuple[str, str | bytes | None]]


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


@dataclass(slots=True)
class OutRecord:
    topic: str
    value: bytes
    key: bytes | None = None
    headers: Headers = field(default_factory=list)
    # The input this output was made from, when the handler says: an output the broker refuses
    # is dead-lettered as that input, at its coordinates (`undeliverable`). Never produced.
    origin: InRecord | None = field(default=None, compare=False, repr=False)


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


# What a dead letter keeps of a value too large to keep whole: enough to recognise the record.
DLQ_EXCERPT_BYTES = 16_384
# Room left for a dead letter's own headers (dlq.error is cut at 2,000 bytes) under the record limit.
_DLQ_HEADROOM_BYTES = 8_192


def undeliverable(out: OutRecord, reason: str, service: str, max_record_bytes: int) -> OutRecord:
    """The dead letter for an output the broker refused for good (too large, invalid), built to fit.

    It goes to the DLQ of the input the output was made from (`out.origin`), with that input's
    coordinates, so an SRE finds the event that caused it; without an origin, to the DLQ of the
    topic the output was for. A refused dead letter is itself cut down. The value is kept whole
    when it fits, else as its first DLQ_EXCERPT_BYTES with `dlq.truncated_from_bytes`."""
    why = f"output refused by the broker: {reason}"
    if out.topic.endswith(".dlq"):
        letter = OutRecord(topic=out.topic, key=out.key, value=out.value, origin=out.origin,
                           headers=[(k, v) for k, v in out.headers if k != "dlq.error"])
        letter.headers.append(("dlq.error", (why + "; " + _text(header(out.headers, "dlq.error")))[:2000].encode()))
    elif out.origin is not None:
        letter = dead_letter_of(out.origin, why, service)
        letter.topic = f"{out.origin.topic.removesuffix('.retry')}.dlq"  # retry topics share their main topic's DLQ
        letter.headers.append(("dlq.output_topic", out.topic.encode()))
    else:
        letter = dead_letter(topic=out.topic, partition=-1, offset=-1, key=out.key, value=out.value,
                             headers=out.headers, error=why, service=service)
    key_bytes = len(letter.key or b"")
    header_bytes = sum(len(k) + len(v or b"") for k, v in letter.headers)
    if len(letter.value) + key_bytes + header_bytes > max_record_bytes - _DLQ_HEADROOM_BYTES:
        letter.headers = [(k, v) for k, v in letter.headers if k.startswith("dlq.")]  # the input's own may be huge
        letter.headers.append(("dlq.truncated_from_bytes", str(len(letter.value)).encode()))
        letter.value = letter.value[:DLQ_EXCERPT_BYTES]
        letter.key = (letter.key or b"")[:1024] or None
    return letter


def _text(value: bytes | None) -> str:
    return value.decode("utf-8", "replace") if value else ""


def dead_letter_of(record: InRecord, error: BaseException | str, service: str) -> OutRecord:
    letter = dead_letter(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.raw_value,
        headers=record.headers,
        error=error,
        service=service,
    )
    letter.origin = record
    return letter
