"""The `apprefer` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from confluent_kafka import KafkaError, KafkaException
from pydantic import ValidationError
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from services.catalog import RUNNABLE, by_command
from services.catalog import run as run_service
from shared.kafka.dlq import BrokerUnreachable
from shared.logging import configure_logging
from shared.networks.registry import registry
from shared.settings import ConfigError, Settings

# Long-running services keep their tracebacks (in their JSON logs); the tools say one line.
SERVICE_COMMANDS = ("run", "dev")
# What `apprefer dev --help` lists: the settings a first run is most likely to change, with their meaning there.
DEV_VARIABLES = {
    "kafka_bootstrap_servers": "unset: start the bundled broker; set: use that cluster instead",
    "database_url": "unset: SQLite in APPREFER_DATA_DIR/apprefer.db",
    "data_dir": "SQLite file, dev secrets, broker log",
    "secret_key": "unset: generated into APPREFER_DATA_DIR/secret.key",
    "admin_token": "unset: generated into APPREFER_DATA_DIR/admin.token",
    "gateway_host": "where the gateway listens",
    "admin_host": "where the admin API listens (keep it private)",
    "log_level": "JSON logs on stderr",
}


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line naming the command and its help, exit 2; `epilog_from` builds the epilog
    only when the help is shown (it may import what the command itself needs)."""

    def __init__(self, *args: Any, epilog_from: Callable[[], str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._epilog_from = epilog_from

    def format_help(self) -> str:
        if self._epilog_from is not None:
            self.epilog = self._epilog_from()
        return super().format_help()

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}; see {self.prog} --help\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="apprefer", description="Mobile attribution and conversion forwarding")
    commands = parser.add_subparsers(dest="command", required=True)
    dev = commands.add_parser("dev", help="run the whole system on this machine until Ctrl-C",
                              description="Run the whole system on this machine until Ctrl-C, SIGTERM or a hang-up:\n"
                                          "the bundled broker, the database, every service.",
                              formatter_class=argparse.RawDescriptionHelpFormatter, epilog_from=dev_epilog)
    dev.add_argument("--fake-networks", action="store_true",
                     help="start the project's fakes of every network and point the forwarders at them")
    dev.add_argument("--drain-seconds", type=float, default=30.0, metavar="N",
                     help="how long an orderly stop waits for the consumers to drain the main topics (default 30)")
    run = commands.add_parser("run", help="run one service")
    run.add_argument("service", choices=RUNNABLE)
    run.add_argument("--network", choices=registry().names, help="for `forwarder`: the network it forwards to")
    topics = commands.add_parser("topics", help="Kafka topics").add_subparsers(dest="action", required=True,
                                                                                metavar="{create,list}")
    topics.add_parser("create", help="create the missing topics (existing ones are left as they are)",
                      description="Create the missing topics at KAFKA_BOOTSTRAP_SERVERS, with "
                                  "APPREFER_TOPIC_PARTITIONS, APPREFER_TOPIC_REPLICATION and "
                                  "APPREFER_TOPIC_RETENTION_MS; existing topics are left as they are.")
    topics.add_parser("list", help="the names of every topic the system uses")
    db = commands.add_parser("db", help="database schema, retention and the report's rollups").add_subparsers(
        dest="action", required=True, metavar="{upgrade,prune,rollup}")
    db.add_parser("upgrade", help="migrate the database to the latest schema",
                  description="Migrate the database (DATABASE_URL, or SQLite in APPREFER_DATA_DIR) to the latest "
                              "schema; running it again changes nothing.")
    prune = db.add_parser("prune", help="delete rows older than their table's retention window",
                          description="Delete rows older than their table's retention window "
                                      "(APPREFER_RETENTION_*_DAYS), oldest first, APPREFER_PRUNE_BATCH_ROWS rows "
                                      "a statement.")
    prune.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")
    prune.add_argument("--json", action="store_true", help="the counts as one JSON object")
    rollup = db.add_parser("rollup", help="roll up the report's closed days now (the audit service does it too)",
                           description="Roll up each app's closed UTC days for the report, and roll again the days "
                                       "changed since (what the audit service does every "
                                       "APPREFER_ROLLUP_INTERVAL_SECONDS). Reports read the raw rows for any day "
                                       "not rolled, so this only makes them faster.")
    rollup.add_argument("--app", action="append", dest="apps", metavar="APP_ID",
                        help="only this app (repeatable); default every app")
    rollup.add_argument("--json", action="store_true", help="the result as one JSON object")
    from services.privacy.cli import add_erase_arguments

    add_erase_arguments(commands.add_parser("erase", help="delete or anonymise one person's data in an app"))
    from services.dlq.cli import add_arguments as add_dlq_arguments

    add_dlq_arguments(commands.add_parser("dlq", help="list, show and replay dead letters"))
    skan = commands.add_parser("skan", help="SKAdNetwork tools")
    skan_commands = skan.add_subparsers(dest="skan_command", required=True)
    verify = skan_commands.add_parser("verify", help="verify a postback's Apple signature",
                                      description="Verify a SKAN postback's Apple signature; print one JSON line. "
                                                  "Exit 0 valid, 1 invalid, 2 unreadable or not a postback.")
    verify.add_argument("file", help="a postback JSON file, or - for standard input")
    return parser


def dev_epilog() -> str:
    """The ports `apprefer dev` listens on and its main variables, from Settings' names and defaults."""
    from services.catalog import services
    from services.dev import CONSUMER_PORTS_FROM, FAKES_PORT_OFFSET

    fields = Settings.model_fields
    gateway, broker = fields["gateway_port"].default, fields["dev_broker_port"].default
    fakes = gateway + FAKES_PORT_OFFSET
    ports = [
        (f"{gateway}", "gateway", fields["gateway_port"].alias),
        (f"{fields['admin_port'].default}", "admin API", fields["admin_port"].alias),
        (f"{gateway + CONSUMER_PORTS_FROM}-{gateway + len(services()) - 1}", "consumers' /healthz, /readyz, /metrics",
         f"{fields['gateway_port'].alias} + {CONSUMER_PORTS_FROM} and on"),
        (f"{fakes}-{fakes + len(registry().names) - 1}", "fake networks (--fake-networks)",
         f"{fields['gateway_port'].alias} + {FAKES_PORT_OFFSET}"),
        (f"{broker}", "bundled broker (KAFKA_BOOTSTRAP_SERVERS unset)", fields["dev_broker_port"].alias),
    ]
    lines = ["ports (defaults; each moved by its variable):"]
    lines += [f"  {port:<11} {what:<48} {variable}" for port, what, variable in ports]
    lines += ["", "variables (name, default, what it does here):"]
    for name, meaning in DEV_VARIABLES.items():
        field = fields[name]
        default = "unset" if field.default is None else str(field.default)
        if isinstance(field.default, Path) and not field.default.is_absolute():
            default = f"./{default}"
        lines.append(f"  {field.alias:<25} {default:<15} {meaning}")
    lines += ["", "Every variable: the Configuration table of README.md."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """A bad setting, an absent broker or database is one clear line on stderr and exit 2, never a traceback."""
    args = _parser().parse_args(argv)
    where = f"apprefer {args.command}"
    try:
        settings = Settings()
        return _run(args, settings)
    except ConfigError as exc:
        print(f"apprefer: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:  # pydantic-settings, reading the environment
        for error in exc.errors(include_url=False):
            location = ".".join(str(part) for part in error["loc"])
            print(f"apprefer: bad setting {location}: {error['msg']}", file=sys.stderr)
        return 2
    except BrokerUnreachable as exc:
        print(f"{where}: {exc} (KAFKA_BOOTSTRAP_SERVERS)", file=sys.stderr)
        return 2
    except KafkaException as exc:
        if args.command in SERVICE_COMMANDS:
            raise
        print(f"{where}: Kafka at {settings.kafka_bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS) failed: "
              f"{_kafka_reason(exc)}", file=sys.stderr)
        return 2
    except OperationalError as exc:  # the database is unreachable, refuses us, or its file cannot be opened
        if args.command in SERVICE_COMMANDS:
            raise
        print(f"{where}: cannot use the database {_database(settings)}: {' '.join(str(exc.orig).split())}",
              file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. a data dir that cannot be created; not a broken pipe, which names no file
        if args.command in SERVICE_COMMANDS or exc.filename is None:
            raise
        print(f"{where}: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2


def _kafka_reason(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    return error.str() if isinstance(error, KafkaError) else str(exc)


def _database(settings: Settings) -> str:
    """The database's URL without its password, and the variable that chose it."""
    url = settings.effective_database_url
    variable = "DATABASE_URL" if settings.database_url else "APPREFER_DATA_DIR"
    try:
        parsed = make_url(url)
        url = URL.create(parsed.drivername, parsed.username, None, parsed.host, parsed.port, parsed.database,
                         parsed.query).render_as_string(hide_password=False)
    except ArgumentError:
        url = "(an unparsable URL)"
    return f"{url} ({variable})"


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "skan":
        from services.skan.verify_cli import run_verify

        return run_verify(args.file)
    if args.command == "dlq":
        from services.dlq.cli import run as run_dlq

        return run_dlq(settings, args)
    if args.command == "dev":
        configure_logging("dev", settings.log_level)
        from services.dev import run_dev

        return run_dev(settings, fake_networks=args.fake_networks, drain_seconds=args.drain_seconds)
    if args.command == "topics":
        from services.dlq.cli import counted
        from shared.kafka.dlq import check_broker
        from shared.kafka.topics import all_topics, create_topics

        if args.action == "list":
            print("\n".join(all_topics()))
            return 0
        check_broker(settings.kafka_bootstrap_servers)  # seconds, not create_topics' 30 s of librdkafka logs
        created = create_topics(settings.kafka_bootstrap_servers, settings.topic_partitions,
                                settings.topic_replication, retention_ms=settings.topic_retention_ms)
        print(f"created {counted(len(created), 'topic')}"
              + (f": {', '.join(created)}" if created else " (all existed)")
              + f"; new topics keep records {settings.topic_retention_ms / 86_400_000:g} days (retention.ms="
              f"{settings.topic_retention_ms}), existing topics keep their own retention")
        return 0
    if args.command == "erase":
        from services.privacy.cli import run_erase

        return run_erase(settings, args)
    if args.command == "db" and args.action == "rollup":
        from services.admin.rollup_cli import run_rollup

        return run_rollup(settings, args.apps, args.json)
    if args.command == "db" and args.action == "prune":
        from services.privacy.cli import run_prune

        return run_prune(settings, args.dry_run, args.json)
    if args.command == "db":
        from shared.db.migrate import upgrade

        upgrade(settings.effective_database_url)
        print("database is at the latest schema")
        return 0
    configure_logging(args.service, settings.log_level)
    if args.service == "forwarder" and args.network is None:
        print(f"apprefer run forwarder: --network is required: one of {', '.join(registry().names)}", file=sys.stderr)
        return 2
    command = ("forwarder", "--network", args.network) if args.service == "forwarder" else (args.service,)
    run_service(by_command(command), settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
