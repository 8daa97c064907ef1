"""`apprefer erase` and `apprefer db prune`: erasure and retention from the command line, against the database."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

import orjson
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from services.privacy.erasure import (
    IDENTIFIER_KINDS,
    KAFKA_NOTE,
    UnknownApp,
    erase,
    hash_identifiers,
)
from services.privacy.retention import count_expired, now_ms, prune, windows
from shared.db.session import make_engine, make_sessionmaker
from shared.errors import InputError
from shared.settings import Settings


def _option(kind: str) -> str:
    return "--" + kind.replace("_", "-")


def add_erase_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--app", dest="app_id", metavar="APP", required=True, help="the app whose data to erase")
    parser.add_argument("--device-id", help="the app-scoped device id (IDFV, Android ID, the SDK's id)")
    parser.add_argument("--external-id", help="the app's user id, as the SDK sent it in user.external_id")
    parser.add_argument("--email", help="an email address (normalised and hashed at once, never stored)")
    parser.add_argument("--phone", help="a phone number with its country code (hashed at once, never stored)")
    parser.add_argument("--dry-run", action="store_true", help="count what would go, change nothing")
    parser.add_argument("--json", action="store_true", help="the summary as one JSON object on standard output")


def run_erase(settings: Settings, args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    try:
        identifiers = hash_identifiers(device_id=args.device_id, external_id=args.external_id, email=args.email,
                                       phone=args.phone)
    except InputError as exc:
        if exc.field == "body":
            options = ", ".join(_option(kind) for kind in IDENTIFIER_KINDS)
            print(f"apprefer erase: give at least one of {options}", file=sys.stderr)
        else:
            print(f"apprefer erase: {_option(exc.field)}: {exc.message}", file=sys.stderr)
        return 2
    verb = "would delete or anonymise" if args.dry_run else "deleted or anonymised"
    engine = make_engine(settings.effective_database_url)
    try:
        console.print(f"erasing {', '.join(identifiers.kinds)} from app {args.app_id}"
                      + (" (dry run: nothing is changed)" if args.dry_run else ""))
        result = erase(make_sessionmaker(engine), args.app_id, identifiers, source="cli", dry_run=args.dry_run,
                       progress=lambda table, rows: console.print(f"  {table}: {rows} {verb}"))
    except UnknownApp as exc:
        print(f"apprefer erase: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    if args.json:
        sys.stdout.write(orjson.dumps(result.as_json()).decode() + "\n")
        return 0
    table = Table("table", verb)
    for name, rows in result.counts.items():
        table.add_row(name, str(rows))
    Console().print(table)
    console.print(f"recorded as {result.erasure_id} in erasure_requests (the kinds of identifier and these "
                  f"counts, no value); {KAFKA_NOTE}")
    return 0


def run_prune(settings: Settings, dry_run: bool, as_json: bool) -> int:
    console = Console(stderr=True)
    table_windows = windows(settings)
    at_ms = now_ms()
    engine = make_engine(settings.effective_database_url)
    try:
        sessions = make_sessionmaker(engine)
        expired = count_expired(sessions, table_windows, at_ms)
        if dry_run:
            counts = expired
        else:
            with Progress(console=console, transient=True) as progress:
                tasks = {w.table: progress.add_task(f"pruning {w.table}", total=expired[w.table] or 1)
                         for w in table_windows}
                counts = prune(sessions, table_windows, batch_rows=settings.prune_batch_rows, at_ms=at_ms,
                               progress=lambda table, rows: progress.advance(tasks[table], rows))
    finally:
        engine.dispose()
    if as_json:
        sys.stdout.write(orjson.dumps({"dry_run": dry_run, "deleted": counts}).decode() + "\n")
        return 0
    verb = "would delete" if dry_run else "deleted"
    summary = Table("table", "window (days)", "older than", verb)
    for window in table_windows:
        older_than = datetime.fromtimestamp(window.cutoff_ms(at_ms) / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
        summary.add_row(window.table, str(window.days), older_than, str(counts[window.table]))
    Console().print(summary)
    console.print(f"{verb} {sum(counts.values())} rows" + (" (dry run: nothing was deleted)" if dry_run else ""))
    return 0
