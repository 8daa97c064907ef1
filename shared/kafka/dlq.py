"""Dead letters for SREs: list, show and replay what sits in a `<topic>.dlq`, for `apprefer dlq` and the admin
API alike (services/dlq/cli.py, services/admin/api/dlq.py): one copy of the reading, the filters, the times
they take, and the replay with its bookkeeping.

Reading never joins a consumer group (partitions are assigned, and read to the end each had when the read
began: a partition-EOF event, not the high watermark, which a broker can report late), so listing changes
nothing. The CLI reads every record; the admin API reads a bounded window per partition from the end and
answers a cursor to read further back (`page_dead_letters`). A replay re-publishes each matching record to the
topic it came from, with its original key and headers plus `replay.*` headers, waits for the broker's
acknowledgement, and only then records it in `dlq_replays`, so a second replay skips it and a crash mid-way
replays at most the unrecorded tail again.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import heapq
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, ClusterMetadata
from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from shared.avro import AvroCodec, DecodeError
from shared.db.models import DlqReplay
from shared.db.upsert import insert_ignoring_duplicates
from shared.forwarding.audit import audit_out
from shared.kafka.consumer import message_headers
from shared.kafka.producer import SyncProducer
from shared.kafka.records import Headers, OutRecord, header

REPLAY_HEADERS = ("replay.from", "replay.at_ms")
# How long a tool waits for a broker's first answer. librdkafka gives up on a refused connection
# in well under a second (all brokers down); this bounds the wait for an address that never answers.
METADATA_TIMEOUT_SECONDS = 5.0
# A read that gets neither a record nor a partition's end for this long fails (DeadLetterReadError).
READ_STALL_SECONDS = 10.0
# librdkafka's own log lines (a few per second while no broker answers) go to Python logging under
# this name: a service's JSON log shows them, a command line without logging configured drops them.
CLIENT_LOG = logging.getLogger("apprefer.librdkafka")
CLIENT_LOG.addHandler(logging.NullHandler())
# The admin API's page: at most this many records read back per partition, at most this many answered.
DEFAULT_WINDOW, MAX_WINDOW = 500, 10_000
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
# Replay bookkeeping: positions looked up in dlq_replays this many at a time.
_LOOKUP_CHUNK = 1000

TopicPart = tuple[str, int]


class BrokerUnreachable(RuntimeError):
    """No broker of `bootstrap` answered a metadata request in time."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(f"no Kafka broker answered at {bootstrap}")
        self.bootstrap = bootstrap


class DeadLetterReadError(RuntimeError):
    """A broker answered, then a read of a dead-letter topic failed."""


class ReplayRunning(RuntimeError):
    """Another replay is under way in this process: two at once could both publish the same letters."""


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


# ------------------------------------------------------------------------------------------------ times

TIME_FORMS = "RFC 3339, epoch seconds or ms, or relative: 30m, 2h, 7d, today, yesterday, now"
_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
# Below this a number is epoch seconds (until the year 5138), above it epoch milliseconds.
_EPOCH_MS_FROM = 100_000_000_000


def epoch_ms(text: str | None, now: datetime | None = None) -> int | None:
    """A point in time as epoch ms: RFC 3339, epoch seconds or ms, a duration ago (`30m`, `2h`, `7d`, `1w`),
    or `now`, `today`, `yesterday` (local midnight). ValueError, with the accepted forms, for anything else."""
    if not text or not text.strip():
        return None
    word = text.strip().lower()
    now = now or datetime.now().astimezone()
    if word in ("now", "today", "yesterday"):
        if word == "now":
            return int(now.timestamp() * 1000)
        start = datetime.combine(now.date(), datetime.min.time(), tzinfo=now.tzinfo)  # naive now: local time
        return int((start - timedelta(days=1 if word == "yesterday" else 0)).timestamp() * 1000)
    relative = _RELATIVE.fullmatch(word)
    if relative:
        seconds = float(relative.group(1)) * _UNIT_SECONDS[relative.group(2)]
        return int((now.timestamp() - seconds) * 1000)
    try:
        number = float(word)
    except ValueError:
        pass
    else:
        if not math.isfinite(number):
            raise ValueError(f"{text!r} is not a time ({TIME_FORMS})")
        return int(number) if abs(number) >= _EPOCH_MS_FROM else int(number * 1000)
    try:
        return int(datetime.fromisoformat(text.strip().replace("Z", "+00:00")).timestamp() * 1000)
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"{text!r} is not a time ({TIME_FORMS})") from None


# ------------------------------------------------------------------------------------ letters, filters


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

    def detail(self) -> dict[str, Any]:
        """Everything about it (`apprefer dlq show`, GET /admin/v1/dlq/{topic}/{partition}/{offset}): the summary,
        the record decoded (or its bytes in hex when they are not a known record) and the headers."""
        shown: dict[str, Any] = {**self.summary(), "schema": self.schema, "record": self.record,
                                 "headers": {k: v.decode("utf-8", "replace") if isinstance(v, bytes) else v
                                             for k, v in self.headers}}
        if self.record is None:
            shown["value_hex"] = self.value.hex()
        return shown


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


def dead_letter_topics(network: str | None = None, topic: str | None = None) -> list[str]:
    """The DLQ topics to look at: one network's, one named topic's, or every one."""
    from shared.kafka.topics import CONSUMED, dlq, forward_topic
    from shared.networks.registry import registry

    if topic:
        return [topic if topic.endswith(".dlq") else dlq(topic)]
    if network:
        return [dlq(forward_topic(network))]
    return [dlq(t) for t in CONSUMED] + [dlq(forward_topic(n)) for n in registry().names]


# ------------------------------------------------------------------------------------------------ reading


class _Reader:
    """One assigned (never subscribed) consumer: which partitions the topics have, their watermarks, and the
    records of offset ranges, each read to its end or to the partition's end (its EOF event)."""

    def __init__(self, bootstrap: str, codec: AvroCodec, timeout: float) -> None:
        config, self._watch = tool_client_config(bootstrap, **{
            "group.id": "apprefer-dlq-reader", "enable.auto.commit": False,
            # A start below the log's start (retention) or past its end has nothing for us: the partition's
            # read ends there (an error event), rather than going on from the log's start or end.
            "auto.offset.reset": "error",
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 10,  # the broker would otherwise hold the fetch that reports EOF for 500 ms
        })
        self._consumer = Consumer(config)
        self._bootstrap, self._codec, self._timeout = bootstrap, codec, timeout

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._consumer.close()

    def partitions(self, topics: Sequence[str]) -> list[TopicPart]:
        """The partitions of those of `topics` that exist, in order."""
        only = topics[0] if len(topics) == 1 else None
        metadata = cluster_metadata(self._consumer, self._watch, self._bootstrap, only, self._timeout)
        found: list[TopicPart] = []
        for topic in topics:
            described = metadata.topics.get(topic)
            if described is not None and described.error is None:
                found += [(topic, partition) for partition in sorted(described.partitions)]
        return found

    def watermarks(self, part: TopicPart) -> tuple[int, int]:
        try:
            marks = self._consumer.get_watermark_offsets(TopicPartition(*part), timeout=self._timeout)
        except KafkaException as exc:
            raise DeadLetterReadError(f"cannot read {part[0]} [{part[1]}] from {self._bootstrap}: {exc}") from exc
        if marks is None:
            raise DeadLetterReadError(f"no answer for the offsets of {part[0]} [{part[1]}] from {self._bootstrap}")
        return int(marks[0]), int(marks[1])

    def read(self, ranges: dict[TopicPart, tuple[int, int | None]]) -> Iterator[DeadLetter]:
        """Each partition's records from `start` (an offset, or OFFSET_BEGINNING) up to `end` (exclusive;
        None: to the partition's end when the read gets there)."""
        pending = {part for part, (start, end) in ranges.items() if end is None or start < end}
        if not pending:
            return
        consumer = self._consumer

        def finish(part: TopicPart) -> None:
            pending.discard(part)
            consumer.pause([TopicPartition(*part)])

        try:
            consumer.assign([TopicPartition(topic, partition, ranges[(topic, partition)][0])
                             for topic, partition in sorted(pending)])
            progressed, last_error = time.monotonic(), ""
            while pending:
                messages = consumer.consume(500, 0.2)
                for message in messages:
                    part = (message.topic() or "", message.partition() or 0)
                    if part not in pending:
                        continue
                    error = message.error()
                    if error is not None:
                        if error.code() in (KafkaError._PARTITION_EOF, KafkaError._AUTO_OFFSET_RESET):
                            progressed = time.monotonic()
                            finish(part)
                        else:
                            last_error = error.str()
                        continue
                    progressed = time.monotonic()
                    offset, end = message.offset() or 0, ranges[part][1]
                    if end is not None and offset >= end:
                        finish(part)
                        continue
                    yield _letter(message, self._codec)
                    if end is not None and offset + 1 >= end:
                        finish(part)
                if pending and time.monotonic() - progressed > READ_STALL_SECONDS:
                    raise DeadLetterReadError(f"reading {', '.join(sorted({t for t, _ in pending}))} from "
                                              f"{self._bootstrap}: nothing for {READ_STALL_SECONDS:g}s"
                                              + (f" ({last_error})" if last_error else ""))
        except KafkaException as exc:
            raise DeadLetterReadError(f"cannot read dead letters from {self._bootstrap}: {exc}") from exc


def _letter(message: Message, codec: AvroCodec) -> DeadLetter:
    letter = DeadLetter(
        topic=message.topic() or "", partition=message.partition() or 0, offset=message.offset() or 0,
        key=message.key(), value=message.value() or b"", headers=message_headers(message),
        timestamp_ms=message.timestamp()[1],
    )
    # An undecodable record is still listed, shown and replayable as raw bytes.
    with contextlib.suppress(DecodeError):
        letter.schema, letter.record = codec.decode(letter.value)
    return letter


def read_dead_letters(bootstrap: str, topic: str, codec: AvroCodec,
                      timeout: float = METADATA_TIMEOUT_SECONDS) -> Iterator[DeadLetter]:
    """Every record of `topic` up to each partition's end when the read gets there; BrokerUnreachable when
    no broker answers within `timeout`."""
    with _Reader(bootstrap, codec, timeout) as reader:
        parts = reader.partitions([topic])
        yield from reader.read({part: (OFFSET_BEGINNING, None) for part in parts})


def find_dead_letters(bootstrap: str, topics: list[str], letter_filter: DlqFilter, codec: AvroCodec
                      ) -> list[DeadLetter]:
    """Every matching record of the topics (the CLI's `list` and every replay)."""
    return [letter for topic in topics for letter in read_dead_letters(bootstrap, topic, codec)
            if letter_filter.matches(letter)]


def read_dead_letter(bootstrap: str, topic: str, partition: int, offset: int, codec: AvroCodec,
                     timeout: float = METADATA_TIMEOUT_SECONDS) -> DeadLetter | None:
    """The record at one position (`dlq show`), read alone; None when the topic, partition or offset has none."""
    with _Reader(bootstrap, codec, timeout) as reader:
        if (topic, partition) not in reader.partitions([topic]):
            return None
        low, high = reader.watermarks((topic, partition))
        if offset < low:
            return None
        # From the high mark at most (see page_dead_letters): it can lag, and past the end a broker sends nothing.
        for letter in reader.read({(topic, partition): (min(offset, high), offset + 1)}):
            if letter.offset == offset:
                return letter
    return None


@dataclass(frozen=True, slots=True)
class DeadLetterPage:
    letters: list[DeadLetter]  # matching ones, newest first (merged across partitions by failed_at_ms)
    next: str | None  # the cursor to read further back; None: every partition was read to its start


def encode_cursor(before: dict[TopicPart, int]) -> str:
    """Opaque: base64url of {topic: {partition: offset}}, each offset the (exclusive) end to read back from."""
    grouped: dict[str, dict[str, int]] = {}
    for (topic, partition), offset in sorted(before.items()):
        grouped.setdefault(topic, {})[str(partition)] = offset
    return base64.urlsafe_b64encode(orjson.dumps(grouped)).decode().rstrip("=")


def decode_cursor(text: str) -> dict[TopicPart, int]:
    """ValueError for anything `encode_cursor` did not make."""
    try:
        grouped = orjson.loads(base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4)))
    except (binascii.Error, orjson.JSONDecodeError, ValueError):
        raise ValueError("not a cursor this API answered") from None
    if not isinstance(grouped, dict) or not grouped:
        raise ValueError("not a cursor this API answered")
    before: dict[TopicPart, int] = {}
    for topic, partitions in grouped.items():
        if not isinstance(partitions, dict) or not partitions:
            raise ValueError("not a cursor this API answered")
        for partition, offset in partitions.items():
            if not partition.isdigit() or type(offset) is not int or offset < 0:
                raise ValueError("not a cursor this API answered")
            before[(topic, int(partition))] = offset
    return before


def page_dead_letters(bootstrap: str, topics: Sequence[str], letter_filter: DlqFilter, codec: AvroCodec, *,
                      limit: int = DEFAULT_LIMIT, window: int = DEFAULT_WINDOW, cursor: str | None = None,
                      timeout: float = METADATA_TIMEOUT_SECONDS) -> DeadLetterPage:
    """One page of the topics' dead letters, newest first: from each partition at most `window` records back
    from its end (or from where `cursor` says the last page stopped), the matching ones up to `limit`.

    The records of all partitions are taken newest first (each partition's from its newest offset back, merged
    by failed_at_ms) until `limit` matched; the next cursor starts each partition below the last record taken
    from it, so following `next` until None sees every record exactly once, however many matched. A page may
    hold no match and still have a `next`: the records it read matched nothing. ValueError: a cursor that is
    not one, or is for other topics or partitions."""
    before = decode_cursor(cursor) if cursor is not None else None
    with _Reader(bootstrap, codec, timeout) as reader:
        parts = reader.partitions(list(topics))
        if before is not None:
            unknown = set(before) - set(parts)
            if unknown:
                named = ", ".join(f"{topic} [{partition}]" for topic, partition in sorted(unknown))
                raise ValueError(f"the cursor is for other topics or partitions ({named}): keep the network "
                                 "and topic of the listing it came from")
        tops: dict[TopicPart, int | None] = dict(before) if before is not None else dict.fromkeys(parts)
        ranges: dict[TopicPart, tuple[int, int | None]] = {}
        lows: dict[TopicPart, int] = {}
        for part, top in tops.items():
            # The high mark can lag (the bundled broker answers the last batch's base offset + 1), so a page reads
            # to the partition's EOF, not to it; and it never starts past it: a broker sends nothing for an offset
            # past the end (a made-up cursor), not even an EOF. A lag can make a read longer than `window`.
            low, high = reader.watermarks(part)
            start = max(low, min((high if top is None else top) - window, high))
            if top is not None and start >= top:
                continue  # nothing left below the cursor (retention took it): this partition is done
            ranges[part], lows[part] = (start, top), low
        newest: dict[TopicPart, list[DeadLetter]] = {part: [] for part in ranges}
        for letter in reader.read(ranges):
            newest[(letter.topic, letter.partition)].append(letter)
    cut: set[TopicPart] = set()  # more than `window` read (a lagging high mark): the oldest are left for later
    for part, letters in newest.items():
        letters.sort(key=lambda letter: letter.offset, reverse=True)
        if len(letters) > window:
            del letters[window:]
            cut.add(part)
    heads = [(-letters[0].failed_at_ms, part) for part, letters in newest.items() if letters]
    heapq.heapify(heads)
    taken = dict.fromkeys(newest, 0)
    matched: list[DeadLetter] = []
    while heads and len(matched) < limit:
        _, part = heapq.heappop(heads)
        letters = newest[part]
        letter = letters[taken[part]]
        taken[part] += 1
        if letter_filter.matches(letter):
            matched.append(letter)
        if taken[part] < len(letters):
            heapq.heappush(heads, (-letters[taken[part]].failed_at_ms, part))
    following: dict[TopicPart, int] = {}
    for part, (start, _top) in ranges.items():
        letters, left = newest[part], newest[part][taken[part]:]
        if left:
            end = left[0].offset + 1
        elif part in cut:
            end = letters[-1].offset
        else:
            end = start  # all read, all taken: the next page reads below this window
        if end > lows[part]:
            following[part] = end
    return DeadLetterPage(matched, encode_cursor(following) if following else None)


# ------------------------------------------------------------------------------------------------ replay


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


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    matched: int  # dead letters matching the filters
    letters: list[DeadLetter]  # the ones to publish
    skipped: int  # matching, already replayed, left out (none with force)


def plan_replay(letters: list[DeadLetter], sessions: sessionmaker[Session], force: bool) -> ReplayPlan:
    """The matching letters less those dlq_replays has (unless `force`)."""
    if force or not letters:
        return ReplayPlan(len(letters), list(letters), 0)
    done: set[tuple[str, int, int]] = set()
    positions = tuple_(DlqReplay.topic, DlqReplay.partition, DlqReplay.offset)
    with sessions() as session:
        for start in range(0, len(letters), _LOOKUP_CHUNK):
            chunk = [(d.topic, d.partition, d.offset) for d in letters[start:start + _LOOKUP_CHUNK]]
            found = session.execute(
                select(DlqReplay.topic, DlqReplay.partition, DlqReplay.offset).where(positions.in_(chunk)))
            done.update((topic, partition, offset) for topic, partition, offset in found)
    left = [d for d in letters if (d.topic, d.partition, d.offset) not in done]
    return ReplayPlan(len(letters), left, len(letters) - len(left))


def replay_recorded(letters: list[DeadLetter], producer: SyncProducer, sessions: sessionmaker[Session],
                    codec: AvroCodec, progress: Callable[[int], None] | None = None) -> int:
    """Publishes the letters again; after each acknowledged batch, a `retrying` audit record for each letter of
    an app ("replayed from <position> to <topic>") and a dlq_replays row for each, so a second replay skips it."""

    def record(batch: list[tuple[DeadLetter, OutRecord]]) -> None:
        now_ms = int(time.time() * 1000)
        audits = [audit_out(codec, app_id=d.app_id or "", event_id=d.event_id or d.position,
                            network=(d.record or {}).get("network") or d.source_topic, status="retrying",
                            detail=f"replayed from {d.position} to {out.topic}")
                  for d, out in batch if d.record is not None and d.app_id]
        producer.send_all(audits)
        with sessions.begin() as session:
            insert_ignoring_duplicates(session, DlqReplay, [
                {"topic": d.topic, "partition": d.partition, "offset": d.offset, "replayed_to": out.topic,
                 "event_id": d.event_id, "replayed_at_ms": now_ms} for d, out in batch])

    return replay(letters, producer, codec, record, progress=progress)


# ------------------------------------------------------------------------------------------ for a service


class DeadLetterDesk:
    """The dead letters as a long-running service (the admin API) serves them: pages, one in full, and replays,
    one at a time per process, through a producer made on the first replay and closed by `close`. Blocking:
    call it in a thread."""

    def __init__(self, bootstrap: str, codec: AvroCodec, sessions: sessionmaker[Session],
                 producer: Callable[[], SyncProducer]) -> None:
        self._bootstrap, self._codec, self._sessions = bootstrap, codec, sessions
        self._make_producer = producer
        self._producer: SyncProducer | None = None
        self._replaying = threading.Lock()

    def __call__(self, network: str | None, letter_filter: DlqFilter, limit: int) -> list[dict[str, Any]]:
        """The first page's summaries (services/admin/guard.py's DeadLetterLister)."""
        page = self.page(dead_letter_topics(network), letter_filter, limit=limit)
        return [letter.summary() for letter in page.letters]

    def page(self, topics: Sequence[str], letter_filter: DlqFilter, *, limit: int = DEFAULT_LIMIT,
             window: int = DEFAULT_WINDOW, cursor: str | None = None) -> DeadLetterPage:
        return page_dead_letters(self._bootstrap, topics, letter_filter, self._codec, limit=limit, window=window,
                                 cursor=cursor)

    def show(self, topic: str, partition: int, offset: int) -> DeadLetter | None:
        return read_dead_letter(self._bootstrap, topic, partition, offset, self._codec)

    def replay(self, topics: Sequence[str], letter_filter: DlqFilter, *, dry_run: bool, force: bool,
               planned: Callable[[ReplayPlan], None] | None = None, progress: Callable[[int], None] | None = None
               ) -> tuple[ReplayPlan, int]:
        """What matches (less what was replayed, unless `force`), and how many were published (0 on a dry run).
        `planned` is told the plan before anything is published, `progress` each batch acknowledged (its size).
        ReplayRunning while another replay of this process runs."""
        if not self._replaying.acquire(blocking=False):
            raise ReplayRunning("a replay is already running; try again when it is done")
        try:
            plan = plan_replay(find_dead_letters(self._bootstrap, list(topics), letter_filter, self._codec),
                               self._sessions, force)
            if planned is not None:
                planned(plan)
            if dry_run or not plan.letters:
                return plan, 0
            if self._producer is None:
                self._producer = self._make_producer()
            return plan, replay_recorded(plan.letters, self._producer, self._sessions, self._codec, progress)
        finally:
            self._replaying.release()

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
            self._producer = None
