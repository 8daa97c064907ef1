"""The forwarder handler on its own, with each outcome: records in, records out, against a migrated PostgreSQL
and the fake Meta, no broker. (tests/integration/test_forwarder_isolation.py covers latency and isolation.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from shared.avro import codec
from shared.db.models import Delivery
from shared.kafka.records import header
from tests.fakes import FakeMeta
from tests.integration.test_forwarder_isolation import TOKEN, Engine, audits, engine_for, job_record, statuses

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def fake() -> Iterator[FakeMeta]:
    with FakeMeta(tokens=(TOKEN,)) as server:
        yield server


@pytest.fixture
def engine(fake: FakeMeta, migrated_pg_url: str) -> Iterator[Engine]:
    yield from engine_for(fake, migrated_pg_url, apps=2)


def test_delivered_is_audited_and_in_the_ledger_and_never_sent_again(fake: FakeMeta, engine: Engine) -> None:
    record = job_record(engine.apps[0], "buy-1")
    outputs = engine.handler([record])
    assert [o.topic for o in outputs] == ["audit.records"]
    assert statuses(outputs) == {"buy-1": "delivered"}
    with engine.sessions() as session:
        assert session.execute(select(Delivery.event_id, Delivery.network)).all() == [("buy-1", "meta")]
    sent = len(fake.requests)
    again = engine.handler([record])  # redelivered after a crash before the commit
    assert statuses(again) == {"buy-1": "skipped"} and len(fake.requests) == sent
    assert [e["event_id"] for e in fake.events] == ["buy-1"]


def test_a_transient_answer_goes_to_the_retry_topic_with_its_due_time(fake: FakeMeta, engine: Engine) -> None:
    fake.fail_for(5.0, status=503, body={"error": {"message": "down", "code": 2, "is_transient": True}})
    outputs = engine.handler([job_record(engine.apps[0], "buy-2")])
    [retry] = [o for o in outputs if o.topic == "forward.meta.retry"]
    assert header(retry.headers, "retry.attempt") == b"1" and int(header(retry.headers, "retry.due_ms") or 0) > 0
    assert codec().decode(retry.value)[1]["attempt"] == 1
    assert statuses(outputs) == {"buy-2": "retrying"}


def test_a_permanent_answer_is_dead_lettered_and_costs_only_its_app(fake: FakeMeta, engine: Engine) -> None:
    engine.store.put_integration(engine.apps[0], "meta", {"credentials": {"access_token": "EAAB-revoked"}})
    outputs = engine.handler([job_record(engine.apps[0], "buy-3"), job_record(engine.apps[1], "buy-4", 1)])
    assert [o.topic for o in outputs if o.topic != "audit.records"] == ["forward.meta.dlq"]
    assert statuses(outputs) == {"buy-3": "rejected", "buy-4": "delivered"}
    [rejected] = [a for a in audits(outputs) if a["event_id"] == "buy-3"]
    assert "EAAB-revoked" not in repr(rejected) and "EAAB-revoked" not in repr(outputs)
