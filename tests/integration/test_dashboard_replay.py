"""The Dead letters page replays in the background and shows its progress (services/admin/dashboard/replay_jobs.py):
real broker, real PostgreSQL, the admin service's app in process with the same dead-letter desk as
`apprefer run admin`. The post answers at once with a job that htmx asks for every half second; the job counts
what the broker acknowledged, and its end is the page's result, each replayed event linked to the audit."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from confluent_kafka import Producer

from services.admin.dashboard.replay_jobs import ReplayJob
from shared.avro import codec
from shared.db.session import make_engine, make_sessionmaker
from shared.kafka.dlq import DeadLetterDesk
from shared.kafka.producer import SyncProducer
from shared.kafka.records import InRecord, dead_letter_of
from shared.kafka.topics import create_topics
from tests.support.dashboard import admin_service, client_of, csrf_of, sign_in
from tests.support.topic_reading import read_all

DLQ = "forward.meta.dlq"
HTMX = {"HX-Request": "true"}
_JOB_URL = re.compile(r'hx-get="(/dead-letters/replay/[^"]+)"')


def dead_letters(bootstrap: str, app_id: str, count: int) -> list[str]:
    """`count` Meta forwarding jobs dead-lettered as the forwarder's runner does; their positions."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for n in range(count):
        job = {"job_id": f"{app_id}-{n}:meta", "app_id": app_id, "network": "meta", "event_id": f"{app_id}-{n}",
               "event_name": "purchase", "network_event_name": "Purchase", "event_time_ms": int(time.time() * 1000),
               "device": {"device_id": f"d-{n}"}, "attempt": 3, "first_attempt_ms": 1}
        value = codec().encode("apprefer.ForwardJob", job)
        letter = dead_letter_of(InRecord(topic="forward.meta", partition=0, offset=n, key=app_id.encode(),
                                         raw_value=value, headers=[], schema="apprefer.ForwardJob",
                                         value=codec().decode(value)[1]), "HTTP 400: invalid token", "forwarder-meta")
        producer.produce(letter.topic, letter.value, letter.key, headers=letter.headers)
    assert producer.flush(30) == 0
    return [f"{DLQ}:{m.partition()}:{m.offset()}" for m in read_all(bootstrap, DLQ)
            if (m.key() or b"").decode() == app_id]


@pytest.fixture
async def dashboard(fresh_bootstrap: str, migrated_pg_url: str) -> AsyncIterator[tuple[Any, str]]:
    create_topics(fresh_bootstrap, partitions=3, replication=1)
    engine = make_engine(migrated_pg_url)
    desk = DeadLetterDesk(fresh_bootstrap, codec(), make_sessionmaker(engine),
                          producer=lambda: SyncProducer({"bootstrap.servers": fresh_bootstrap}, service="test"))
    service = admin_service(migrated_pg_url, dead_letters=desk)
    client = await client_of(service)
    try:
        await sign_in(client, next_page="/dead-letters")
        yield client, fresh_bootstrap
    finally:
        await client.close()
        desk.close()
        service.dispose()
        engine.dispose()


async def test_a_replay_runs_in_the_background_and_the_page_follows_it_to_its_end(dashboard: tuple[Any, str]
                                                                                ) -> None:
    client, bootstrap = dashboard
    app_id = f"app_{uuid.uuid4().hex[:12]}"
    positions = dead_letters(bootstrap, app_id, 3)
    assert len(positions) == 3
    page = await client.get("/dead-letters")
    token = csrf_of(await page.text())

    started = await client.post("/dead-letters/replay", headers=HTMX, data={
        "csrf_token": token, "action": "replay", "position": positions})
    body = await started.text()
    assert started.status == 202, body
    job_url = _JOB_URL.search(body)
    assert job_url is not None and 'hx-trigger="load delay:500ms"' in body, body  # it asks for itself again

    deadline = time.monotonic() + 30
    while True:
        answer = await client.get(job_url.group(1), headers=HTMX)
        shown = await answer.text()
        assert answer.status == 200, shown
        if "Replaying" not in shown:
            break
        assert time.monotonic() < deadline, "the replay did not end"
        await asyncio.sleep(0.1)
    assert "Replayed 3" in shown and "hx-get" not in shown  # the result: no more asking
    for n in range(3):
        assert f"event_id={app_id}-{n}" in shown  # each linked to the audit
    # Replayed and recorded: a second replay of the same letters publishes nothing (already replayed).
    again = await client.post("/dead-letters/replay", headers=HTMX, data={
        "csrf_token": token, "action": "dry_run", "position": positions})
    assert "Dry run: 0 would be replayed" in await again.text()


async def test_a_job_no_replica_knows_says_so(dashboard: tuple[Any, str]) -> None:
    client, _ = dashboard
    answer = await client.get("/dead-letters/replay/unknown-job", headers=HTMX)
    assert answer.status == 404 and "not known here" in await answer.text()


def test_a_job_counts_what_the_broker_acknowledged() -> None:
    from shared.kafka.dlq import ReplayPlan

    job = ReplayJob("j", selected=5)
    job.planned(ReplayPlan(matched=5, letters=[object()] * 4, skipped=1))  # type: ignore[list-item]
    job.advance(3)
    job.advance(1)
    assert (job.to_publish, job.published, job.done) == (4, 4, False)
