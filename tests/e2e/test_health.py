"""Consumers' /readyz follows their broker and database; /metrics exports lag and progress."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from shared.kafka.topics import create_topics
from tests.support.pipeline import ServiceProcess, http_call, service_env, start_edge, wait_until
from tests.support.ports import free_port

pytestmark = pytest.mark.slow


def readiness(port: int) -> tuple[int, object]:
    try:
        status, _, body = http_call("GET", f"http://127.0.0.1:{port}/readyz", timeout=5)
    except OSError:
        return 0, None
    return status, body


def test_consumer_readiness_and_metrics(fresh_bootstrap: str, migrated_pg_url: str, tmp_path: Path) -> None:
    create_topics(fresh_bootstrap, partitions=3, replication=1)
    good_port, broken_port = free_port(), free_port()
    env = service_env(fresh_bootstrap, migrated_pg_url)
    healthy = ServiceProcess(["run", "attribution"], {**env, "APPREFER_METRICS_PORT": str(good_port)}, tmp_path).start()
    no_db = service_env(fresh_bootstrap, "postgresql+psycopg://postgres@127.0.0.1:1/none",
                        APPREFER_METRICS_PORT=str(broken_port))
    broken = ServiceProcess(["run", "fanout"], no_db, tmp_path).start()
    edge = start_edge(env, tmp_path)
    base = edge.base
    try:
        wait_until(lambda: readiness(good_port)[0] == 200, timeout=30, what="attribution ready")
        wait_until(lambda: readiness(broken_port)[0] == 503, timeout=30, what="fanout reports its database")
        _status, body = readiness(broken_port)
        assert "database" in body["failures"] and "broker" not in body["failures"]  # type: ignore[index]

        key = edge.admin.new_app()["live_key"]
        events = [{"event_id": f"e{n}", "event_name": "open", "event_time": int(time.time()),
                   "device": {"device_id": f"d{n}"}} for n in range(30)]
        assert http_call("POST", f"{base}/v1/events", {"events": events}, {"Authorization": f"Bearer {key}"})[0] == 202

        def metrics() -> str:
            return http_call("GET", f"http://127.0.0.1:{good_port}/metrics")[2].decode()

        wait_until(lambda: 'apprefer_records_processed_total{service="attribution",topic="events.raw"} 30.0'
                   in metrics(), timeout=30, what="30 records processed")
        text = metrics()
        assert "apprefer_consumer_lag{" in text and "apprefer_oldest_unprocessed_record_age_seconds" in text
    finally:
        edge.terminate()
        healthy.terminate()
        broken.terminate()
