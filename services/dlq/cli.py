"""`apprefer dlq list|show|replay`: what sits in the dead-letter topics, and sending it back."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import TextIO

import orjson
from rich.console import Console
from rich.progress import Progress
from rich.table import Column, Table

from shared.avro import codec
from shared.db.session import make_engine, make_sessionmaker
from shared.kafka.config import producer_config
from shared.kafka.dlq import (
    CLIENT_LOG,
    TIME_FORMS,
    DeadLetter,
    DeadLetterReadError,
    DlqFilter,
    dead_letter_topics,
    epoch_ms,
    find_dead_letters,
    plan_replay,
    read_dead_letter,
    replay_recorded,
)
from shared.kafka.producer import DeliveryFailed, SyncProducer
from shared.networks.registry import registry
from shared.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="{list,show,replay}")
    listing = actions.add_parser("list", help="the dead letters matching the filters",
                                 description="List dead letters, position first (what `dlq show` takes). Piped, "
                                             "one tab-separated line each: position, failed at, app, event, error.")
    _add_filters(listing)
    listing.add_argument("--limit", type=int, default=1000, metavar="N", help="at most this many (default 1000)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    show = actions.add_parser("show", help="one dead letter in full: record, headers, error",
                              description="Show one dead letter: its record decoded, its headers and its error.")
    show.add_argument("position", type=_position, metavar="TOPIC:PARTITION:OFFSET",
                      help="the position `dlq list` prints first, e.g. forward.meta.dlq:0:42")
    replayer = actions.add_parser("replay", help="publish the matching dead letters again to their topics",
                                  description="Publish the matching dead letters again to the topics they came "
                                              "from; each is recorded, so a second replay skips it.")
    _add_filters(replayer)
    replayer.add_argument("--dry-run", action="store_true", help="show what would be replayed, publish nothing")
    replayer.add_argument("--force", action="store_true", help="include records already replayed")
    replayer.add_argument("--json", action="store_true", help="with --dry-run: one JSON object per line")


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--network", choices=registry().names, help="the network's forward.<network>.dlq")
    parser.add_argument("--topic", help="any dead-letter topic (e.g. events.raw.dlq); default: every one")
    parser.add_argument("--app", dest="app_id", metavar="APP", help="only this app's records")
    parser.add_argument("--event", dest="event_id", metavar="EVENT", help="only this event id")
    parser.add_argument("--error", metavar="TEXT",
                        help="only records whose error contains this text (case-insensitive)")
    parser.add_argument("--since", type=_time_option, metavar="TIME",
                        help=f"failed at or after this time ({TIME_FORMS})")
    parser.add_argument("--until", type=_time_option, metavar="TIME",
                        help=f"failed at or before this time ({TIME_FORMS})")


def _time_option(text: str) -> int | None:
    try:
        return epoch_ms(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _position(text: str) -> str:
    parts = text.rsplit(":", 2)
    if len(parts) != 3 or not parts[0] or not parts[1].isdigit() or not parts[2].isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a position: give TOPIC:PARTITION:OFFSET, "
                                         "as `dlq list` prints it first")
    return text


def counted(count: int, noun: str) -> str:
    """`1 dead letter`, `3 dead letters`."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def matching(settings: Settings, args: argparse.Namespace) -> list[DeadLetter]:
    letter_filter = DlqFilter(app_id=args.app_id, event_id=args.event_id, error_contains=args.error,
                              since_ms=args.since, until_ms=args.until)
    return find_dead_letters(settings.kafka_bootstrap_servers, dead_letter_topics(args.network, args.topic),
                             letter_filter, codec())


def run(settings: Settings, args: argparse.Namespace) -> int:
    """BrokerUnreachable goes up to the `apprefer` command, which says it in one line for every command."""
    console = Console(stderr=True)
    try:
        if args.action == "show":
            return _show(settings, args.position)
        letters = matching(settings, args)
        if args.action == "list":
            _print_list(letters[: args.limit], args.json)
            shown = f" (showing {args.limit})" if len(letters) > args.limit else ""
            console.print(f"{counted(len(letters), 'dead letter')}{shown}")
            return 0
        return _replay(settings, args, letters, console)
    except (DeadLetterReadError, DeliveryFailed) as exc:
        print(f"apprefer dlq {args.action}: {exc}", file=sys.stderr)
        return 2


def _print_list(letters: list[DeadLetter], as_json: bool, stdout: TextIO | None = None) -> None:
    stdout = sys.stdout if stdout is None else stdout
    if as_json:
        for letter in letters:
            stdout.write(orjson.dumps(letter.summary()).decode() + "\n")
        return
    if not stdout.isatty():
        # For grep, cut and awk: one line per letter, position first, nothing cut, no colour.
        for letter in letters:
            failed = datetime.fromtimestamp(letter.failed_at_ms / 1000).astimezone().isoformat(timespec="seconds")
            fields = (letter.position, failed, letter.app_id or "", letter.event_id or "", letter.error)
            stdout.write("\t".join(_one_line(field) for field in fields) + "\n")
        return
    # The position is what `dlq show` needs: never cut or wrapped; the other columns give way.
    widest = max((len(letter.position) for letter in letters), default=len("position"))
    table = Table(Column("position", no_wrap=True, min_width=widest), Column("failed at", no_wrap=True, min_width=19),
                  Column("app", overflow="fold"), Column("event", overflow="fold", min_width=5),
                  Column("error", overflow="fold", min_width=5))
    for letter in letters:
        failed = datetime.fromtimestamp(letter.failed_at_ms / 1000).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(letter.position, failed, letter.app_id or "", letter.event_id or "", letter.error[:120])
    Console(file=stdout).print(table)


def _one_line(text: str) -> str:
    return text.replace("\t", " ").replace("\r", " ").replace("\n", " ")


def _show(settings: Settings, position: str) -> int:
    topic, partition, offset = position.rsplit(":", 2)
    letter = read_dead_letter(settings.kafka_bootstrap_servers, topic, int(partition), int(offset), codec())
    if letter is None:
        print(f"apprefer dlq show: no dead letter at {position}", file=sys.stderr)
        return 1
    sys.stdout.write(orjson.dumps(letter.detail(), option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _replay(settings: Settings, args: argparse.Namespace, letters: list[DeadLetter], console: Console) -> int:
    engine = make_engine(settings.effective_database_url)
    sessions = make_sessionmaker(engine)
    try:
        letters = plan_replay(letters, sessions, args.force).letters
        if args.dry_run or not letters:
            _print_list(letters, args.json)
            console.print(f"{'would replay' if args.dry_run else 'nothing to replay:'} "
                          f"{counted(len(letters), 'dead letter')}")
            return 0
        producer = SyncProducer(producer_config(settings, logger=CLIENT_LOG))
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("replaying", total=len(letters))
            count = replay_recorded(letters, producer, sessions, codec(),
                                    progress=lambda n: progress.advance(task, n))
        producer.close()
        console.print(f"replayed {counted(count, 'dead letter')}")
        return 0
    finally:
        engine.dispose()
