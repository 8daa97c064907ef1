"""Smoke tests proving the service fixtures in tests/conftest.py work against real services."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.timeout(120)

N_RECORDS = 100
PARTITIONS = 3
# URLs handed out by ``empty_pg_url`` in this module; each test checks its own is new.
_SEEN_PG_URLS: set[str] = set()


def test_kafka_roundtrip(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    topic = unique_name("infra-topic")
    group = unique_name("infra-group")

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    futures[topic].result(timeout=30)
    metadata = admin.list_topics(topic=topic, timeout=10)
    assert len(metadata.topics[topic].partitions) == PARTITIONS

    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5}
    )
    delivery_errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            delivery_errors.append(err)

    for i in range(N_RECORDS):
        producer.produce(
            topic,
            key=f"k{i}".encode(),
            value=f"v{i}".encode(),
            headers=[("idx", str(i).encode()), ("source", b"test_infra")],
            on_delivery=on_delivery,
        )
    remaining = producer.flush(30)
    assert remaining == 0, f"{remaining} records still undelivered after flush"
    assert not delivery_errors, delivery_errors

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "session.timeout.ms": 6000,
            "auto.offset.reset": "earliest",
        }
    )
    received: dict[int, Message] = {}
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(received) < N_RECORDS and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            assert err is None, f"consumer error: {err}"
            headers = dict(msg.headers() or [])
            idx = headers.get("idx")
            assert isinstance(idx, bytes), f"record without idx header: {msg.headers()}"
            received[int(idx)] = msg
            consumer.store_offsets(message=msg)
        assert len(received) == N_RECORDS, f"got {len(received)}/{N_RECORDS} records before the deadline"

        consumer.commit(asynchronous=False)
        committed = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        assert sum(tp.offset for tp in committed if tp.offset >= 0) == N_RECORDS
    finally:
        consumer.close()

    for i, msg in received.items():
        assert msg.key() == f"k{i}".encode()
        assert msg.value() == f"v{i}".encode()
        assert msg.headers() == [("idx", str(i).encode()), ("source", b"test_infra")]
    assert len({msg.partition() for msg in received.values()}) > 1, "records should span partitions"


def test_postgres_roundtrip(empty_pg_url: str) -> None:
    assert empty_pg_url not in _SEEN_PG_URLS
    _SEEN_PG_URLS.add(empty_pg_url)
    engine = create_engine(empty_pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE infra_check (id integer PRIMARY KEY, note text NOT NULL)"))
            conn.execute(
                text("INSERT INTO infra_check (id, note) VALUES (:id, :note)"), {"id": 1, "note": "hi"}
            )
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, note FROM infra_check")).all()
            db_name = conn.execute(text("SELECT current_database()")).scalar_one()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [(1, "hi")]
    assert db_name == make_url(empty_pg_url).database


@pytest.mark.parametrize("round_", [1, 2, 3])
def test_empty_pg_url_is_fresh_and_empty(empty_pg_url: str, round_: int) -> None:
    # Order independent: every invocation must get a database no other test has seen, with no tables
    # (test_postgres_roundtrip and earlier rounds create tables in theirs).
    assert empty_pg_url not in _SEEN_PG_URLS
    _SEEN_PG_URLS.add(empty_pg_url)
    engine = create_engine(empty_pg_url)
    try:
        with engine.begin() as conn:
            tables = conn.execute(
                text("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
            ).scalar_one()
            conn.execute(text(f"CREATE TABLE leftover_{round_} (id integer)"))
    finally:
        engine.dispose()
    assert tables == 0
