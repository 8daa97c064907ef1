"""`apprefer` as a user runs it, a process (issue 14, item 5): with no broker or no database each command says so in
one line and exits 2 within seconds, without librdkafka's log lines; against a broker, a piped `dlq list` is one
tab-separated line per dead letter whose first field `dlq show` takes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from shared.kafka.dlq import METADATA_TIMEOUT_SECONDS
from tests.support.pipeline import REPO, service_env
from tests.support.ports import free_port


def apprefer(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("argv", [["dlq", "list"], ["dlq", "list", "--network", "meta", "--since", "yesterday"],
                                  ["dlq", "show", "forward.meta.dlq:0:1"], ["dlq", "replay", "--dry-run"],
                                  ["topics", "create"]])
def test_no_broker_is_one_line_and_exit_2_within_seconds(tmp_path: Path, argv: list[str]) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"  # nothing listens there
    env = service_env(bootstrap, f"sqlite:///{tmp_path / 'apprefer.db'}", APPREFER_DATA_DIR=str(tmp_path))
    started = time.monotonic()
    result = apprefer(env, *argv)
    elapsed = time.monotonic() - started
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"apprefer {argv[0]}: no Kafka broker answered at {bootstrap} (KAFKA_BOOTSTRAP_SERVERS)\n"
    assert elapsed < METADATA_TIMEOUT_SECONDS + 2, elapsed


def test_no_database_is_one_line_and_exit_2_without_its_password(tmp_path: Path) -> None:
    port = free_port()
    env = service_env("127.0.0.1:1", f"postgresql://alice:s3cret-pw@127.0.0.1:{port}/apprefer",
                      APPREFER_DATA_DIR=str(tmp_path))
    result = apprefer(env, "db", "upgrade")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith(f"apprefer db: cannot use the database postgresql+psycopg://alice@127.0.0.1:{port}"
                                    "/apprefer (DATABASE_URL): ")
    assert result.stderr.count("\n") == 1 and "s3cret-pw" not in result.stderr


def test_skan_verify_of_an_empty_object_exits_2(tmp_path: Path) -> None:
    env = service_env("127.0.0.1:1", f"sqlite:///{tmp_path / 'apprefer.db'}", APPREFER_DATA_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "services.cli", "skan", "verify", "-"], env=env, cwd=REPO,
                            input="{}", capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and json.loads(result.stdout)["valid"] is False


def test_piped_dlq_list_is_plain_lines_that_dlq_show_takes(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = f"cli-{uuid.uuid4().hex}.dlq"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})  # kept: a freed client fails its futures
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(10)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    failed_at_ms = int(time.time() * 1000) - 3_600_000
    for n, error in enumerate(["HTTP 400 (code 190):\tinvalid token\nrotate it", "HTTP 413: too large"]):
        producer.produce(topic, value=f"raw-{n}".encode(), headers=[
            ("dlq.error", error.encode()), ("dlq.failed_at_ms", str(failed_at_ms).encode()),
            ("dlq.source_topic", b"forward.meta")])
    assert producer.flush(10) == 0
    env = service_env(kafka_bootstrap, f"sqlite:///{tmp_path / 'apprefer.db'}", APPREFER_DATA_DIR=str(tmp_path))

    listed = apprefer(env, "dlq", "list", "--topic", topic, "--since", "2h", "--until", "now")
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr == "2 dead letters\n"  # and nothing from librdkafka
    lines = listed.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == [f"{topic}:0:0", f"{topic}:0:1"]
    assert all(len(line.split("\t")) == 5 and "\x1b" not in line for line in lines)
    assert lines[0].split("\t")[4] == "HTTP 400 (code 190): invalid token rotate it"

    one = apprefer(env, "dlq", "list", "--topic", topic, "--error", "too large", "--since", "yesterday")
    assert one.returncode == 0 and one.stderr == "1 dead letter\n", one.stderr
    position = one.stdout.split("\t")[0]
    shown = apprefer(env, "dlq", "show", position)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["position"] == position == f"{topic}:0:1"

    assert apprefer(env, "dlq", "list", "--topic", topic, "--since", "30m").stderr == "0 dead letters\n"
