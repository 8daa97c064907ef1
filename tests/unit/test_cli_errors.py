"""`apprefer`'s errors and help, in process (issue 14, item 5): every mistake is one line and exit 2, each
command's help shows its own options, and output is fit for both a terminal and a pipe."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from confluent_kafka import KafkaError, KafkaException

from services import cli
from services.admin.guard import AdminContext
from services.admin.routes import admin_routes
from services.cli import _parser, main
from services.dlq import cli as dlq_cli
from services.dlq.cli import counted, epoch_ms
from services.skan.verify_cli import run_verify
from shared.kafka.dlq import DeadLetter, DlqFilter
from shared.settings import Settings
from tests.support.ports import free_port

NOW = datetime(2024, 5, 2, 15, 30, tzinfo=UTC)
MS = 1000


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


# --- times ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("now", NOW),
    ("30m", NOW - timedelta(minutes=30)),
    ("2h", NOW - timedelta(hours=2)),
    ("7d", NOW - timedelta(days=7)),
    ("1w", NOW - timedelta(days=7)),
    ("90s", NOW - timedelta(seconds=90)),
    ("1.5h", NOW - timedelta(minutes=90)),
    ("today", datetime(2024, 5, 2, tzinfo=UTC)),
    ("Yesterday", datetime(2024, 5, 1, tzinfo=UTC)),
    ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
    ("2024-05-01T14:00:00+02:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),
    ("1714564800", datetime(2024, 5, 1, 12, tzinfo=UTC)),  # epoch seconds
    ("1714564800000", datetime(2024, 5, 1, 12, tzinfo=UTC)),  # epoch milliseconds
])
def test_since_and_until_take_absolute_and_relative_times(text: str, expected: datetime) -> None:
    assert epoch_ms(text, now=NOW) == int(expected.timestamp() * MS)


def test_an_absent_time_is_no_bound() -> None:
    assert epoch_ms(None) is None and epoch_ms("") is None


@pytest.mark.parametrize("text", ["yesterdy", "2 hours", "-", "nan", "2024-13-01", "h2"])
def test_a_bad_time_is_a_value_error_naming_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a time \(RFC 3339.*yesterday"):
        epoch_ms(text, now=NOW)


def test_a_bad_since_is_one_line_naming_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["dlq", "list", "--since", "yesterdy"])
    assert exited.value.code == 2
    line = one_error_line(capsys)
    assert line.startswith("apprefer dlq list: argument --since: 'yesterdy' is not a time")


async def test_the_admin_api_takes_relative_times_and_answers_400_to_a_bad_one() -> None:
    asked: list[DlqFilter] = []

    def dead_letters(_network: str | None, letter_filter: DlqFilter, _limit: int) -> list[dict[str, Any]]:
        asked.append(letter_filter)
        return []

    app = web.Application()
    context = AdminContext(store=None, admin_token="t", public_base_url="",  # type: ignore[arg-type]
                           dead_letters=dead_letters)
    app.router.add_routes(admin_routes(context))
    async with TestClient(TestServer(app)) as client:
        headers = {"Authorization": "Bearer t"}
        ok = await client.get("/admin/v1/dlq?since=yesterday&until=now", headers=headers)
        assert ok.status == 200 and (await ok.json())["dead_letters"] == []
        bad = await client.get("/admin/v1/dlq?since=yesterdy", headers=headers)
        assert bad.status == 400 and "is not a time" in (await bad.json())["message"]
    [letter_filter] = asked
    assert letter_filter.since_ms is not None and letter_filter.until_ms is not None
    assert 0 < letter_filter.until_ms - letter_filter.since_ms <= 2 * 86_400 * MS


# --- parsers: their own help, their own options, the documented command lines -----------------------


def help_of(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        _parser().parse_args([*argv, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(("argv", "own", "foreign"), [
    (("topics", "create"), "usage: apprefer topics create", ["{create,list}"]),
    (("db", "upgrade"), "usage: apprefer db upgrade", ["--dry-run", "--json", "prune"]),
    (("db", "prune"), "usage: apprefer db prune", ["upgrade"]),
    (("db", "rollup"), "usage: apprefer db rollup", ["--dry-run", "upgrade"]),
    (("dlq", "list"), "usage: apprefer dlq list", ["--dry-run", "--force", "POSITION", "TOPIC:PARTITION:OFFSET"]),
    (("dlq", "show"), "usage: apprefer dlq show", ["--network", "--since", "--dry-run", "--limit", "--json"]),
    (("dlq", "replay"), "usage: apprefer dlq replay", ["--limit", "TOPIC:PARTITION:OFFSET"]),
])
def test_each_action_has_its_own_help_and_only_its_own_options(capsys: pytest.CaptureFixture[str],
                                                                argv: tuple[str, ...], own: str,
                                                                foreign: list[str]) -> None:
    text = help_of(capsys, *argv)
    assert text.startswith(own)
    assert not [option for option in foreign if option in text], text


def test_dlq_list_and_replay_take_the_filters(capsys: pytest.CaptureFixture[str]) -> None:
    for action in ("list", "replay"):
        text = help_of(capsys, "dlq", action)
        assert all(f in text for f in ("--network", "--topic", "--app", "--event", "--error", "--since", "--until"))
    assert "--dry-run" in help_of(capsys, "dlq", "replay") and "--force" in help_of(capsys, "dlq", "replay")


@pytest.mark.parametrize("argv", [
    ["dlq", "list", "--network", "meta", "--app", "app-1", "--json"],
    ["dlq", "show", "forward.meta.dlq:0:42"],
    ["dlq", "replay", "--network", "meta", "--app", "app-1", "--dry-run"],
    ["dlq", "replay", "--network", "meta", "--error", "token", "--dry-run"],
    ["dlq", "replay", "--network", "meta", "--app", "app-1", "--error", "token"],
    ["dlq", "list", "--since", "2h", "--until", "now"],
    ["topics", "create"], ["topics", "list"], ["db", "upgrade"], ["db", "prune", "--dry-run", "--json"],
    ["db", "rollup", "--app", "app-1", "--app", "app-2", "--json"],
    ["erase", "--app", "app-1", "--email", "a@example.com", "--dry-run"],
    ["run", "forwarder", "--network", "meta"], ["skan", "verify", "-"], ["dev"],
])
def test_the_documented_command_lines_still_parse(argv: list[str]) -> None:
    _parser().parse_args(argv)


@pytest.mark.parametrize(("argv", "start"), [
    (["dlq", "show", "forward.meta.dlq"], "apprefer dlq show: argument TOPIC:PARTITION:OFFSET: "),
    (["dlq", "show"], "apprefer dlq show: the following arguments are required: TOPIC:PARTITION:OFFSET"),
    (["dlq"], "apprefer dlq: the following arguments are required"),
    (["topics", "drop"], "apprefer topics: argument {create,list}: invalid choice: 'drop'"),
    (["dev", "--drain-seconds", "soon"], "apprefer dev: argument --drain-seconds: invalid float value: 'soon'"),
])
def test_a_usage_mistake_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str],
                                               start: str) -> None:
    with pytest.raises(SystemExit) as exited:
        _parser().parse_args(argv)
    assert exited.value.code == 2
    line = one_error_line(capsys)
    assert line.startswith(start) and line.endswith(f"see {start.split(':')[0]} --help")


def test_dev_help_lists_its_ports_and_variables(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of(capsys, "dev")
    assert "--fake-networks" in text and "--drain-seconds N" in text
    from services.catalog import services

    consumers = f"8082-{8080 + len(services()) - 1}"  # a health port per consumer, a forwarder per network
    for port, variable in (("8080", "APPREFER_GATEWAY_PORT"), ("8081", "APPREFER_ADMIN_PORT"),
                           (consumers, "APPREFER_GATEWAY_PORT"),
                           ("9092", "APPREFER_DEV_BROKER_PORT")):
        assert any(port in line and variable in line for line in text.splitlines()), (port, text)
    aliases = {name: field.alias for name, field in Settings.model_fields.items()}
    for name in cli.DEV_VARIABLES:
        assert aliases[name] in text
    assert "KAFKA_BOOTSTRAP_SERVERS   127.0.0.1:9092" in text and "./var" in text


def test_dev_passes_its_options_to_run_dev(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import services.dev

    calls: list[tuple[bool, float]] = []

    def run_dev(_settings: Settings, *, fake_networks: bool, drain_seconds: float) -> int:
        calls.append((fake_networks, drain_seconds))
        return 0

    monkeypatch.setattr(services.dev, "run_dev", run_dev)
    monkeypatch.setattr(cli, "configure_logging", lambda *_args: None)  # the root logger is the test process's
    monkeypatch.setenv("APPREFER_DATA_DIR", str(tmp_path))
    assert main(["dev"]) == 0
    assert main(["dev", "--fake-networks", "--drain-seconds", "2.5"]) == 0
    assert calls == [(False, 30.0), (True, 2.5)]


# --- output ----------------------------------------------------------------------------------------


def test_counts_are_pluralised() -> None:
    assert [counted(n, "dead letter") for n in (0, 1, 2)] == ["0 dead letters", "1 dead letter", "2 dead letters"]


def letter(offset: int, error: str = "retries exhausted: HTTP 400 (code 190) token\texpired\nsee docs") -> DeadLetter:
    event_id = "purchase-0123456789abcdef0123456789abcdef"
    return DeadLetter(topic="forward.google_ads.dlq", partition=5, offset=offset, key=None, value=b"",
                      headers=[("dlq.error", error.encode()), ("dlq.failed_at_ms", b"1714564800000")],
                      timestamp_ms=0, record={"app_id": "app_7f3c2a9d41b84c0e", "event_id": event_id},
                      schema="apprefer.ForwardJob")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_piped_list_is_one_plain_tab_separated_line_per_letter_with_the_position_first() -> None:
    out = io.StringIO()
    dlq_cli._print_list([letter(123456), letter(123457)], as_json=False, stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\x1b" not in out.getvalue()
    fields = lines[0].split("\t")
    assert fields[0] == "forward.google_ads.dlq:5:123456"
    assert datetime.fromisoformat(fields[1]).timestamp() == 1714564800
    assert fields[2:4] == ["app_7f3c2a9d41b84c0e", "purchase-0123456789abcdef0123456789abcdef"]
    assert fields[4] == "retries exhausted: HTTP 400 (code 190) token expired see docs"  # whole, on one line


def test_the_terminal_table_never_cuts_the_position(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    out = Terminal()
    dlq_cli._print_list([letter(123456789)], as_json=False, stdout=out)
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())  # a terminal gets colour
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "forward.google_ads.dlq:5:123456789" in text  # whole, on one line


def test_json_list_is_unchanged() -> None:
    out = io.StringIO()
    dlq_cli._print_list([letter(1)], as_json=True, stdout=out)
    assert json.loads(out.getvalue())["position"] == "forward.google_ads.dlq:5:1"


# --- unreachable broker and database, in process -----------------------------------------------------


def test_a_kafka_failure_in_topics_create_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import shared.kafka.dlq
    import shared.kafka.topics

    def refused(*_args: object, **_kwargs: object) -> list[str]:
        raise KafkaException(KafkaError(KafkaError.INVALID_REPLICATION_FACTOR, "replication factor 3 > 1 broker"))

    monkeypatch.setattr(shared.kafka.dlq, "check_broker", lambda _bootstrap: None)
    monkeypatch.setattr(shared.kafka.topics, "create_topics", refused)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    assert main(["topics", "create"]) == 2
    assert one_error_line(capsys) == ("apprefer topics: Kafka at 127.0.0.1:1 (KAFKA_BOOTSTRAP_SERVERS) failed: "
                                      "replication factor 3 > 1 broker")


def test_an_unreachable_database_is_one_line_without_its_password(monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    monkeypatch.setenv("DATABASE_URL", f"postgresql://alice:s3cret-pw@127.0.0.1:{port}/apprefer")
    assert main(["db", "upgrade"]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"apprefer db: cannot use the database postgresql+psycopg://alice@127.0.0.1:{port}/"
                           "apprefer (DATABASE_URL): ")
    assert "s3cret-pw" not in line and "refused" in line


def test_a_data_dir_that_cannot_be_made_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("APPREFER_DATA_DIR", str(tmp_path / "file" / "data"))
    assert main(["db", "upgrade"]) == 2
    assert one_error_line(capsys).startswith(f"apprefer db: {tmp_path / 'file' / 'data'}: ")


# --- skan verify -------------------------------------------------------------------------------------


@pytest.mark.parametrize("document", ["{}", '{"postback": {}}', '{"name": "not a postback"}'])
def test_skan_verify_of_something_not_a_postback_exits_2(document: str) -> None:
    out = io.StringIO()
    assert run_verify("-", stdin=io.StringIO(document), stdout=out) == 2
    line = json.loads(out.getvalue())
    assert line["valid"] is False and "is not a SKAN postback" in line["reason"]


def test_skan_verify_of_a_postback_badly_signed_still_exits_1() -> None:
    out = io.StringIO()
    postback = {"version": "4.0", "ad-network-id": "example.skadnetwork", "transaction-id": "t-1"}
    assert run_verify("-", stdin=io.StringIO(json.dumps(postback)), stdout=out) == 1


def test_apprefer_skan_verify_exits_2_for_an_empty_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    monkeypatch.setenv("APPREFER_DATA_DIR", str(tmp_path))
    assert main(["skan", "verify", str(empty)]) == 2
    assert json.loads(capsys.readouterr().out)["valid"] is False
