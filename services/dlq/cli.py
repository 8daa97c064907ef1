"""`apprefer dlq list|show|replay`: what sits in the dead-letter topics, and sending it back."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from typing import Any

import orjson
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import select, tuple_

from shared.avro import codec
from shared.db.models import DlqReplay
from shared.db.session import make_engine, make_sessionmaker
from shared.db.upsert import insert_ignoring_duplicates
from shared.forwarding.audit import audit_out
from shared.kafka.config import producer_config
from shared.kafka.dlq import (
    DeadLetter,
    DlqFilter,
    dead_letter_topics,
    find_dead_letters,
    read_dead_letters,
    replay,
)
from shared.kafka.producer import SyncProducer
from shared.kafka.records import OutRecord
from shared.kafka.topics import NETWORKS
from shared.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("list", "show", "replay"))
    parser.add_argument("position", nargs="?", help="for show: TOPIC:PARTITION:OFFSET")
    parser.add_argument("--network", choices=NETWORKS, help="the network's forward.<network>.dlq")
    parser.add_argument("--topic", help="any dead-letter topic (e.g. events.raw.dlq); default: every one")
    parser.add_argument("--app", dest="app_id", help="only this app's records")
    parser.add_argument("--event", dest="event_id", help="only this event id")
    parser.add_argument("--error", help="only records whose error contains this text (case-insensitive)")
    parser.add_argument("--since", help="failed at or after (RFC 3339 or epoch seconds)")
    parser.add_argument("--until", help="failed at or before (RFC 3339 or epoch seconds)")
    parser.add_argument("--limit", type=int, default=1000, help="list: at most this many (default 1000)")
    parser.add_argument("--json", action="store_true", help="list: one JSON object per line")
    parser.add_argument("--dry-run", action="store_true", help="replay: show what would be replayed, publish nothing")
    parser.add_argument("--force", action="store_true", help="replay: include records already replayed")


def epoch_ms(text: str | None) -> int | None:
    if not text:
        return None
    try:
        return int(float(text) * 1000)
    except ValueError:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def matching(settings: Settings, args: argparse.Namespace) -> list[DeadLetter]:
    letter_filter = DlqFilter(app_id=args.app_id, event_id=args.event_id, error_contains=args.error,
                              since_ms=epoch_ms(args.since), until_ms=epoch_ms(args.until))
    return find_dead_letters(settings.kafka_bootstrap_servers, dead_letter_topics(args.network, args.topic),
                             letter_filter, codec())


def run(settings: Settings, args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    if args.action == "show":
        return _show(settings, args)
    letters = matching(settings, args)
    if args.action == "list":
        _print_list(letters[: args.limit], args.json)
        shown = f" (showing {args.limit})" if len(letters) > args.limit else ""
        console.print(f"{len(letters)} dead letters{shown}")
        return 0
    return _replay(settings, args, letters, console)


def _print_list(letters: list[DeadLetter], as_json: bool) -> None:
    if as_json:
        for letter in letters:
            sys.stdout.write(orjson.dumps(letter.summary()).decode() + "\n")
        return
    table = Table("position", "failed at", "app", "event", "error")
    for letter in letters:
        failed = datetime.fromtimestamp(letter.failed_at_ms / 1000).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(letter.position, failed, letter.app_id or "", letter.event_id or "", letter.error[:120])
    Console().print(table)


def _show(settings: Settings, args: argparse.Namespace) -> int:
    if not args.position or args.position.count(":") != 2:
        print("apprefer dlq show TOPIC:PARTITION:OFFSET", file=sys.stderr)
        return 2
    topic = args.position.split(":")[0]
    for letter in read_dead_letters(settings.kafka_bootstrap_servers, topic, codec()):
        if letter.position == args.position:
            shown: dict[str, Any] = {**letter.summary(), "schema": letter.schema, "record": letter.record,
                                     "headers": {k: v.decode("utf-8", "replace") if isinstance(v, bytes) else v
                                                 for k, v in letter.headers}}
            if letter.record is None:
                shown["value_hex"] = letter.value.hex()
            sys.stdout.write(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode() + "\n")
            return 0
    print(f"no dead letter at {args.position}", file=sys.stderr)
    return 1


def _replay(settings: Settings, args: argparse.Namespace, letters: list[DeadLetter], console: Console) -> int:
    engine = make_engine(settings.effective_database_url)
    sessions = make_sessionmaker(engine)
    try:
        if not args.force and letters:
            with sessions() as session:
                done = set(session.execute(
                    select(DlqReplay.topic, DlqReplay.partition, DlqReplay.offset).where(
                        tuple_(DlqReplay.topic, DlqReplay.partition, DlqReplay.offset).in_(
                            [(d.topic, d.partition, d.offset) for d in letters]))
                ).tuples())
            letters = [d for d in letters if (d.topic, d.partition, d.offset) not in done]
        if args.dry_run or not letters:
            _print_list(letters, args.json)
            console.print(f"{'would replay' if args.dry_run else 'nothing to replay:'} {len(letters)} dead letters")
            return 0

        producer = SyncProducer(producer_config(settings))

        def record(batch: list[tuple[DeadLetter, OutRecord]]) -> None:
            now_ms = int(time.time() * 1000)
            audits = [audit_out(codec(), app_id=d.app_id or "", event_id=d.event_id or d.position,
                                network=(d.record or {}).get("network") or d.source_topic, status="retrying",
                                detail=f"replayed from {d.position} to {out.topic}")
                      for d, out in batch if d.record is not None and d.app_id]
            producer.send_all(audits)
            with sessions.begin() as session:
                insert_ignoring_duplicates(session, DlqReplay, [
                    {"topic": d.topic, "partition": d.partition, "offset": d.offset, "replayed_to": out.topic,
                     "event_id": d.event_id, "replayed_at_ms": now_ms} for d, out in batch])

        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("replaying", total=len(letters))
            count = replay(letters, producer, codec(), record, progress=lambda n: progress.advance(task, n))
        producer.close()
        console.print(f"replayed {count} dead letters")
        return 0
    finally:
        engine.dispose()
