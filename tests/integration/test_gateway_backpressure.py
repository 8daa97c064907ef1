"""When the broker cannot take records, the gateway says 503 + Retry-After instead of 202 or hanging."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from shared.kafka.topics import create_topics
from tests.support.broker import BrokerProcess
from tests.support.pipeline import http_call, service_env, start_edge


def test_broker_down_gives_503_with_retry_after_and_queue_full_sheds_load(
    migrated_pg_url: str, tmp_path: Path
) -> None:
    broker = BrokerProcess().start()
    create_topics(broker.bootstrap, partitions=1, replication=1)
    env = service_env(broker.bootstrap, migrated_pg_url, APPREFER_PRODUCER_DELIVERY_TIMEOUT_MS="3000",
                      APPREFER_PRODUCER_QUEUE_MAX_MESSAGES="5")
    edge = start_edge(env, tmp_path)
    base = edge.base
    try:
        key = edge.admin.new_app()["live_key"]
        headers = {"Authorization": f"Bearer {key}"}

        def post(count: int) -> tuple[int, dict[str, str]]:
            events = [{"event_id": uuid.uuid4().hex, "event_name": "open", "event_time": int(time.time()),
                       "device": {"device_id": "d"}} for _ in range(count)]
            status, response_headers, _ = http_call("POST", f"{base}/v1/events", {"events": events}, headers,
                                                    timeout=30)
            return status, response_headers

        assert post(1)[0] == 202
        broker.stop()
        started = time.monotonic()
        status, response_headers = post(1)
        assert status == 503 and response_headers["retry-after"] == "1"
        assert time.monotonic() - started < 10  # bounded by the delivery timeout, not hanging

        # More records than the local queue holds: shed at once rather than buffer without bound.
        with ThreadPoolExecutor(4) as pool:
            statuses = [s for s, _ in pool.map(post, [3, 3, 3, 3])]
        assert all(s == 503 for s in statuses), statuses
    finally:
        edge.terminate()
        broker.stop()
