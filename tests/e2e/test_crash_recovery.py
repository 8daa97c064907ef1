"""The attribution consumer killed with SIGKILL mid-batch and restarted loses nothing."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer
from sqlalchemy import create_engine, func, select

from shared.avro import codec
from shared.db.models import Install
from shared.kafka.topics import EVENTS_ATTRIBUTED, EVENTS_RAW, create_topics
from tests.support.pipeline import ServiceProcess, read_topic, service_env, topic_size, wait_until

pytestmark = pytest.mark.slow

DEVICES = 600  # an install and a purchase each: 1,200 events


def raw_event(app_id: str, device: int, name: str, now_ms: int) -> dict[str, object]:
    return {
        "event_id": f"{name}-{device}", "app_id": app_id, "event_name": name,
        "event_time_ms": now_ms + (0 if name == "install" else 1000), "received_at_ms": now_ms + 2000,
        "sandbox": False, "source": "sdk",
        "device": {"device_id": f"device-{device}", "ip": f"10.0.{device // 250}.{device % 250}"},
        "referrer": {"gclid": f"G-{device}"} if device % 2 else {},
        "user_hashes": {}, "revenue_amount": None, "revenue_currency": None, "properties_json": "{}",
    }


def test_sigkill_mid_batch_then_restart_loses_nothing(fresh_bootstrap: str, migrated_pg_url: str,
                                                      tmp_path: Path) -> None:
    create_topics(fresh_bootstrap, partitions=3, replication=1)
    producer = Producer({"bootstrap.servers": fresh_bootstrap, "enable.idempotence": True})
    now_ms = int(time.time() * 1000)
    for device in range(DEVICES):
        for name in ("install", "purchase"):
            value = codec().encode("apprefer.RawEvent", raw_event("app_crash", device, name, now_ms))
            producer.produce(EVENTS_RAW, value, f"app_crash:device-{device}".encode())
    assert producer.flush(30) == 0

    # Small batches so a kill lands between a batch's database commit and its offset commit.
    env = service_env(fresh_bootstrap, migrated_pg_url, APPREFER_CONSUMER_BATCH_SIZE="20")
    rng = random.Random(7)
    kills = 0
    consumer = ServiceProcess(["run", "attribution"], env, tmp_path).start()
    try:
        engine = create_engine(migrated_pg_url)

        def installs() -> int:
            with engine.connect() as connection:
                return int(connection.scalar(select(func.count()).select_from(Install)) or 0)

        for _ in range(3):
            # Any progress (a batch committed), then the kill within 0.3 s: mid-batch, and the three kills land
            # before the 600 installs are through however fast the machine (a fixed step could overshoot them).
            progress = installs()
            wait_until(lambda p=progress: installs() > p or installs() >= DEVICES, timeout=60,
                       what="attribution progress")
            time.sleep(rng.uniform(0.0, 0.3))
            consumer.kill()
            kills += 1
            consumer = ServiceProcess(["run", "attribution"], env, tmp_path).start()
        expected = {f"{name}-{d}" for d in range(DEVICES) for name in ("install", "purchase")}
        records = read_topic(fresh_bootstrap, EVENTS_ATTRIBUTED,
                             lambda rs: expected <= {r["value"]["event"]["event_id"] for r in rs}, timeout=120)
    finally:
        consumer.terminate()

    assert kills == 3
    # Every event came out (at least once), and a replayed event carries the same attribution.
    seen: dict[str, dict[str, object]] = {}
    for record in records:
        event_id = record["value"]["event"]["event_id"]
        attribution = record["value"]["attribution"]
        assert seen.setdefault(event_id, attribution) == attribution, event_id
    assert set(seen) == expected
    for device in range(DEVICES):
        purchase = seen[f"purchase-{device}"]
        assert purchase["attributed"] is bool(device % 2)
        assert purchase["click_id"] == (f"G-{device}" if device % 2 else None)
    assert installs() == DEVICES
    engine.dispose()
    assert topic_size(fresh_bootstrap, "events.raw.dlq") == 0
