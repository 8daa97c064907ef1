"""The `apprefer` command."""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from shared.logging import configure_logging
from shared.settings import ConfigError, Settings

RUNNABLE = ("gateway", "attribution", "skan", "fanout", "forwarder", "audit")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="apprefer", description="Mobile attribution and conversion forwarding")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("dev", help="run the whole system on this machine until Ctrl-C")
    run = commands.add_parser("run", help="run one service")
    run.add_argument("service", choices=RUNNABLE)
    run.add_argument("--network", help="for `forwarder`: meta, google_ads, tiktok or skan_postback")
    topics = commands.add_parser("topics", help="Kafka topics")
    topics.add_argument("action", choices=("create", "list"))
    db = commands.add_parser("db", help="database schema, and retention")
    db.add_argument("action", choices=("upgrade", "prune"),
                    help="upgrade: to the latest schema; prune: delete rows older than their table's window")
    db.add_argument("--dry-run", action="store_true", help="prune: count what would be deleted, delete nothing")
    db.add_argument("--json", action="store_true", help="prune: the counts as one JSON object")
    from services.privacy.cli import add_erase_arguments

    add_erase_arguments(commands.add_parser("erase", help="delete or anonymise one person's data in an app"))
    from services.dlq.cli import add_arguments as add_dlq_arguments

    add_dlq_arguments(commands.add_parser("dlq", help="list, show and replay dead letters"))
    skan = commands.add_parser("skan", help="SKAdNetwork tools")
    skan_commands = skan.add_subparsers(dest="skan_command", required=True)
    verify = skan_commands.add_parser("verify", help="verify a postback's Apple signature")
    verify.add_argument("file", help="a postback JSON file, or - for standard input")
    return parser


def main(argv: list[str] | None = None) -> int:
    """A bad setting is one clear line on stderr and exit 2, never a traceback."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except ConfigError as exc:
        print(f"apprefer: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:  # pydantic-settings, reading the environment
        for error in exc.errors(include_url=False):
            where = ".".join(str(part) for part in error["loc"])
            print(f"apprefer: bad setting {where}: {error['msg']}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    settings = Settings()
    if args.command == "skan":
        from services.skan.verify_cli import run_verify

        return run_verify(args.file)
    if args.command == "dlq":
        from services.dlq.cli import run as run_dlq

        return run_dlq(settings, args)
    if args.command == "dev":
        configure_logging("dev", settings.log_level)
        from services.dev import run_dev

        return run_dev(settings)
    if args.command == "topics":
        from shared.kafka.topics import all_topics, create_topics

        if args.action == "list":
            print("\n".join(all_topics()))
            return 0
        created = create_topics(settings.kafka_bootstrap_servers, settings.topic_partitions,
                                settings.topic_replication, retention_ms=settings.topic_retention_ms)
        print(f"created {len(created)} topics" + (f": {', '.join(created)}" if created else " (all existed)")
              + f"; new topics keep records {settings.topic_retention_ms / 86_400_000:g} days (retention.ms="
              f"{settings.topic_retention_ms}), existing topics keep their own retention")
        return 0
    if args.command == "erase":
        from services.privacy.cli import run_erase

        return run_erase(settings, args)
    if args.command == "db" and args.action == "prune":
        from services.privacy.cli import run_prune

        return run_prune(settings, args.dry_run, args.json)
    if args.command == "db":
        from shared.db.migrate import upgrade

        upgrade(settings.effective_database_url)
        print("database is at the latest schema")
        return 0
    configure_logging(args.service, settings.log_level)
    if args.service == "gateway":
        from services.gateway.main import run as run_gateway

        run_gateway(settings)
    elif args.service == "attribution":
        from services.attribution.main import run as run_attribution

        run_attribution(settings)
    elif args.service == "skan":
        from services.skan.main import run as run_skan

        run_skan(settings)
    elif args.service == "fanout":
        from services.fanout.main import run as run_fanout

        run_fanout(settings)
    elif args.service == "audit":
        from services.audit.main import run as run_audit

        run_audit(settings)
    elif args.service == "forwarder":
        from services.forwarders.main import run as run_forwarder
        from services.forwarders.registry import NETWORK_MODULES

        if args.network not in NETWORK_MODULES:
            print(f"apprefer run forwarder: --network must be one of {', '.join(NETWORK_MODULES)}", file=sys.stderr)
            return 2
        run_forwarder(settings, args.network)
    return 0


if __name__ == "__main__":
    sys.exit(main())
