"""The forwarding engine against a real HTTP fake (tests/fakes/meta.py) and a real PostgreSQL, called as
the consumer loop calls it: concurrency across apps, a hung tenant costing only its own jobs, late
answers recorded, the circuit breaker, and no secret in any reason, header or audit row."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from services.admin.store import AdminStore
from services.fanout.consumer import forward_job
from services.forwarders import meta
from shared.avro import codec
from shared.db.models import Delivery
from shared.db.session import make_engine, make_sessionmaker
from shared.forwarding.forwarder import ForwarderHandler, Isolation
from shared.forwarding.http import HttpClient
from shared.kafka.records import InRecord, OutRecord, header
from tests.fakes import FakeMeta
from tests.fakes.base import FakeServer

pytestmark = pytest.mark.timeout(120)

TOKEN = "EAAB-secret-meta-token-0123456789"
TIMEOUT_S = 2.0
BATCH_WAIT_S = 0.5


@dataclass
class Engine:
    handler: ForwarderHandler
    store: AdminStore
    sessions: Any
    apps: list[str]


def job_record(app_id: str, event_id: str, offset: int = 0) -> InRecord:
    event = {"event_id": event_id, "app_id": app_id, "event_name": "purchase", "event_time_ms": int(time.time() * 1000),
             "sandbox": False, "device": {"device_id": f"d-{event_id}", "os": "android", "idfa": None, "gaid": None,
                                          "ip": "203.0.113.9", "user_agent": None, "os_version": None, "model": None,
                                          "locale": None, "att_status": None, "app_version": None},
             "user_hashes": {}, "revenue_amount": 9.99, "revenue_currency": "USD", "properties_json": "{}"}
    attribution = {"click_id_type": "fbclid", "click_id": f"IwAR-{event_id}", "click_time_ms": event["event_time_ms"]}
    job = forward_job(event, attribution, "meta", "Purchase")
    value = codec().encode("apprefer.ForwardJob", job)
    return InRecord(topic="forward.meta", partition=0, offset=offset, key=f"{app_id}:d".encode(), raw_value=value,
                    headers=[], schema="apprefer.ForwardJob", value=codec().decode(value)[1])


def audits(outputs: list[OutRecord]) -> list[dict[str, Any]]:
    return [codec().decode(o.value)[1] for o in outputs if o.topic == "audit.records"]


def statuses(outputs: list[OutRecord]) -> dict[str, str]:
    """event id -> its audit status (the last one written)."""
    return {a["event_id"]: a["status"] for a in audits(outputs)}


def engine_for(fake: FakeServer, database_url: str, apps: int) -> Iterator[Engine]:
    db = make_engine(database_url)
    sessions = make_sessionmaker(db)
    store = AdminStore(sessions, "test-secret-key")
    app_ids = []
    for i in range(apps):
        app_id = store.create_app({"name": f"app {i}", "platform": "android"})["app_id"]
        store.put_integration(app_id, "meta", {"settings": {"dataset_id": f"ds-{i}"},
                                               "credentials": {"access_token": TOKEN}})
        app_ids.append(app_id)
    http = HttpClient(timeout=TIMEOUT_S, connect_timeout=1.0, concurrency=64)
    handler = ForwarderHandler(
        spec=meta.SPEC, sessions=sessions, codec=codec(), secret_key="test-secret-key", http=http,
        base_url=fake.base_url, token_url="", retry_delays=[1, 2, 4],
        isolation=Isolation(batch_wait_seconds=BATCH_WAIT_S, breaker_failures=2, breaker_cooldown_seconds=2.0))
    try:
        yield Engine(handler, store, sessions, app_ids)
    finally:
        http.close()
        db.dispose()


@pytest.fixture
def fake() -> Iterator[FakeMeta]:
    with FakeMeta(tokens=(TOKEN,)) as server:
        yield server


def test_requests_for_different_apps_are_in_flight_at_once(fake: FakeMeta, migrated_pg_url: str) -> None:
    fake.set_latency(0.25)
    for engine in engine_for(fake, migrated_pg_url, apps=40):
        records = [job_record(app, f"buy-{i}", i) for i, app in enumerate(engine.apps)]
        started = time.monotonic()
        outputs = engine.handler(records)
        took = time.monotonic() - started
        assert set(statuses(outputs).values()) == {"delivered"} and len(statuses(outputs)) == 40
        # One at a time would be 40 x 250 ms = 10 s; at once it is one round trip and change.
        assert took < 2.0, took
        assert len(fake.events) == 40


def test_a_hung_app_costs_only_its_own_jobs_and_its_breaker_opens(fake: FakeMeta, migrated_pg_url: str) -> None:
    for engine in engine_for(fake, migrated_pg_url, apps=11):
        hung_app, others = engine.apps[0], engine.apps[1:]
        fake.hang("/ds-0/")
        records = [job_record(hung_app, "buy-hung", 0)] + [job_record(app, f"buy-{i}", i + 1)
                                                            for i, app in enumerate(others)]
        started = time.monotonic()
        outputs = engine.handler(records)
        assert time.monotonic() - started < BATCH_WAIT_S + 1.0  # the batch did not wait for the hung request
        assert all(statuses(outputs)[f"buy-{i}"] == "delivered" for i in range(10))
        parked = [o for o in outputs if o.topic == "forward.meta.retry"]
        assert len(parked) == 1
        assert b"no answer from meta within 0.5 s" in (header(parked[0].headers, "retry.last_error") or b"")
        assert int(header(parked[0].headers, "retry.due_ms") or 0) >= (time.time() + TIMEOUT_S) * 1000
        assert statuses(outputs)["buy-hung"] == "retrying"
        # While that request is out, the app's next job waits on the retry topic without a call.
        calls = sum("/ds-0/" in r.path for r in fake.requests)
        started = time.monotonic()
        outputs = engine.handler([job_record(hung_app, "buy-hung-next", 1), job_record(others[1], "buy-x", 12)])
        assert time.monotonic() - started < 0.5 and statuses(outputs) == {"buy-hung-next": "retrying",
                                                                          "buy-x": "delivered"}
        assert "still unanswered" in next(a["detail"] for a in audits(outputs) if a["event_id"] == "buy-hung-next")
        assert sum("/ds-0/" in r.path for r in fake.requests) == calls

        # The parked request times out (failure 1); a second try is parked and times out too (failure 2).
        time.sleep(TIMEOUT_S + 0.5)
        engine.handler([job_record(hung_app, "buy-hung", 0)])
        time.sleep(TIMEOUT_S + 0.5)
        calls_before = sum("/ds-0/" in r.path for r in fake.requests)
        outputs = engine.handler([job_record(hung_app, "buy-hung", 0), job_record(others[0], "buy-late", 11)])
        assert statuses(outputs) == {"buy-hung": "retrying", "buy-late": "delivered"}
        reason = next(a["detail"] for a in audits(outputs) if a["event_id"] == "buy-hung")
        assert reason.startswith("circuit open: 2 consecutive transport failures")
        assert sum("/ds-0/" in r.path for r in fake.requests) == calls_before  # no call made

        # The endpoint answers again; after the cool-down the trial call goes through and closes the breaker.
        fake.unhang("/ds-0/")
        time.sleep(2.1)
        outputs = engine.handler([job_record(hung_app, "buy-hung", 0)])
        assert statuses(outputs) == {"buy-hung": "delivered"}
        outputs = engine.handler([job_record(hung_app, "buy-hung-2", 1)])
        assert statuses(outputs) == {"buy-hung-2": "delivered"}


def test_a_late_answer_is_recorded_and_its_parked_copy_is_not_sent_again(fake: FakeMeta, migrated_pg_url: str) -> None:
    fake.set_latency(1.2)  # slower than the batch waits, well within the request timeout
    for engine in engine_for(fake, migrated_pg_url, apps=1):
        record = job_record(engine.apps[0], "buy-slow")
        outputs = engine.handler([record])
        assert statuses(outputs) == {"buy-slow": "retrying"}
        deadline = time.monotonic() + 10
        while True:
            with engine.sessions() as session:
                if session.get(Delivery, ("buy-slow", "meta")) is not None:
                    break
            assert time.monotonic() < deadline, "the late delivery was never recorded"
            time.sleep(0.1)
        calls = len(fake.requests)
        outputs = engine.handler([record])  # the parked copy, when due
        assert {(a["status"], a["detail"]) for a in audits(outputs)} == {
            ("delivered", "recorded from the delivery ledger"), ("skipped", "already delivered (ledger)")}
        assert len(fake.requests) == calls
        assert [e["event_id"] for e in fake.events] == ["buy-slow"]


class RedirectLoop(FakeServer):
    """Answers every request with a redirect to itself, query string and all: aiohttp gives up with
    TooManyRedirects, whose message carries the URL, token included."""

    name = "redirect-loop"

    def add_routes(self, app: web.Application) -> None:
        async def loop(request: web.Request) -> web.Response:
            raise web.HTTPFound(request.path_qs)

        app.router.add_route("*", "/{tail:.*}", loop)


def test_no_secret_reaches_a_reason_a_header_or_an_audit_row(fake: FakeMeta, migrated_pg_url: str) -> None:
    with RedirectLoop() as looping:
        for engine in engine_for(looping, migrated_pg_url, apps=1):
            outputs = engine.handler([job_record(engine.apps[0], "buy-loop")])
            assert statuses(outputs) == {"buy-loop": "retrying"}
            reason = audits(outputs)[0]["detail"]
            assert "TooManyRedirects" in reason and "access_token=[redacted]" in reason, reason
            assert_no_token(outputs)
    # A network's error text that echoes the token is cleaned too (Permanent: a dead letter with headers).
    fake.fail_next(1, 400, {"error": {"message": f"Malformed access token {TOKEN}", "type": "OAuthException",
                                      "code": 190, "fbtrace_id": "x"}})
    for engine in engine_for(fake, migrated_pg_url, apps=1):
        outputs = engine.handler([job_record(engine.apps[0], "buy-echo")])
        assert statuses(outputs) == {"buy-echo": "rejected"}
        assert "[redacted]" in audits(outputs)[0]["detail"]
        assert any(o.topic == "forward.meta.dlq" for o in outputs)
        assert_no_token(outputs)


def assert_no_token(outputs: list[OutRecord]) -> None:
    for output in outputs:
        assert TOKEN.encode() not in output.value
        for name, value in output.headers:
            assert TOKEN.encode() not in (value.encode() if isinstance(value, str) else value or b""), name
