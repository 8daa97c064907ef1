"""Property: test (pk_test_) traffic never shapes live attribution, and never reaches a network.

Random interleavings of test and live traffic on the same few devices (clicks with and without a test
key, installs with click ids, advertising ids or nothing, reinstalls, purchases) go through the real
attribution and fanout handlers on PostgreSQL, record by record, as the consumer loop calls them. The
same sequence with every test event and test click removed goes through them again for another app.
Every live event must come out with exactly the same attribution both times, and no test event may
become a forwarding job.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.admin.store import AdminStore
from services.attribution.consumer import AttributionHandler
from services.fanout.consumer import FanoutHandler
from services.gateway.click_input import click_record
from services.gateway.event_input import parse_events, raw_event_record
from shared.avro import codec
from shared.db.session import make_engine, make_sessionmaker
from shared.kafka.records import InRecord, OutRecord

pytestmark = pytest.mark.timeout(300)

DEVICES = ("d1", "d2", "d3")
CLICK_IDS = ("IwAR-a", "IwAR-b", "E.C.P.c")
GAIDS = ("gaid-1", "gaid-2")

Step = dict[str, Any]

steps = st.one_of(
    st.fixed_dictionaries({"kind": st.just("click"), "sandbox": st.booleans(), "click_id": st.sampled_from(CLICK_IDS),
                           "gaid": st.none() | st.sampled_from(GAIDS)}),
    st.fixed_dictionaries({"kind": st.just("install"), "sandbox": st.booleans(), "device": st.sampled_from(DEVICES),
                           "click_id": st.none() | st.sampled_from(CLICK_IDS),
                           "gaid": st.none() | st.sampled_from(GAIDS)}),
    st.fixed_dictionaries({"kind": st.just("purchase"), "sandbox": st.booleans(),
                           "device": st.sampled_from(DEVICES)}),
)


class Run:
    """One app's pass through the handlers."""

    def __init__(self, store: AdminStore, sessions: Any, name: str) -> None:
        self.app_id = store.create_app({"name": name, "platform": "android"})["app_id"]
        for network, body in (("meta", {"settings": {"dataset_id": "ds"}, "credentials": {"access_token": "t"}}),
                              ("tiktok", {"settings": {"tiktok_app_id": "tt"}, "credentials": {"access_token": "t"}})):
            store.put_integration(self.app_id, network, body)
        self.attribution = AttributionHandler(sessions, codec())
        self.fanout = FanoutHandler(sessions, codec(), "test-secret-key")
        self.offset = 0

    def feed(self, step: Step, index: int, base_ms: int) -> tuple[list[OutRecord], list[OutRecord]]:
        at_ms = base_ms + index * 1000
        if step["kind"] == "click":
            params = {"fbclid" if step["click_id"].startswith("IwAR") else "ttclid": step["click_id"]}
            if step["gaid"]:
                params["gaid"] = step["gaid"]
            value = click_record(params, app_id=self.app_id, link_id=None, link_network=None, link_campaign=None,
                                 ip="203.0.113.7", user_agent="UA", clicked_at_ms=at_ms, sandbox=step["sandbox"])
            record = self._record("apprefer.Click", value)
        else:
            body: dict[str, Any] = {"event_id": f"e{index}", "event_name": step["kind"], "event_time": at_ms,
                                    "device": {"device_id": step["device"], "os": "android", "ip": "203.0.113.7",
                                               "user_agent": "UA"}}
            if step["kind"] == "install":
                if step["click_id"]:
                    key = "fbclid" if step["click_id"].startswith("IwAR") else "ttclid"
                    body["referrer"] = {key: step["click_id"]}
                if step["gaid"]:
                    body["device"]["gaid"] = step["gaid"]
            else:
                body["revenue"] = {"amount": 1.0, "currency": "USD"}
            (event,), _ = parse_events(body, 1)
            value = raw_event_record(event, app_id=self.app_id, sandbox=step["sandbox"], received_at_ms=at_ms + 10,
                                     request_ip=None, request_user_agent=None, field="", max_revenue_amount=1e6)
            record = self._record("apprefer.RawEvent", value)
        attributed = self.attribution([record])
        jobs = self.fanout([self._as_input(out) for out in attributed if out.topic == "events.attributed"])
        return attributed, jobs

    def _record(self, schema: str, value: dict[str, Any]) -> InRecord:
        self.offset += 1
        raw = codec().encode(schema, value)
        return InRecord(topic="in", partition=0, offset=self.offset, key=None, raw_value=raw, headers=[],
                        schema=schema, value=codec().decode(raw)[1])

    def _as_input(self, out: OutRecord) -> InRecord:
        self.offset += 1
        return InRecord(topic=out.topic, partition=0, offset=self.offset, key=out.key, raw_value=out.value,
                        headers=[], schema="apprefer.AttributedEvent", value=codec().decode(out.value)[1])


@pytest.fixture(scope="module")
def database(postgres_server_url: str) -> Iterator[tuple[AdminStore, Any]]:
    import uuid

    from shared.db.migrate import upgrade
    from tests.support.postgres import create_database, drop_database

    name = f"test_{uuid.uuid4().hex}"
    url = create_database(postgres_server_url, name)
    upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    yield AdminStore(sessions, "test-secret-key"), sessions
    engine.dispose()
    drop_database(postgres_server_url, name)


def live_view(outputs: list[OutRecord]) -> list[dict[str, Any]]:
    out = []
    for record in outputs:
        if record.topic == "events.attributed":
            value = codec().decode(record.value)[1]
            attribution = {k: v for k, v in value["attribution"].items() if k != "click_key"}  # random per click
            out.append({"event_id": value["event"]["event_id"], "attribution": attribution})
    return out


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=st.lists(steps, min_size=1, max_size=14))
def test_test_traffic_never_shapes_live_outcomes(database: tuple[AdminStore, Any], sequence: list[Step]) -> None:
    store, sessions = database
    mixed, live_only = Run(store, sessions, "mixed"), Run(store, sessions, "live only")
    base_ms = int(time.time() * 1000) - 3600_000
    mixed_live: list[dict[str, Any]] = []
    for index, step in enumerate(sequence):
        attributed, jobs = mixed.feed(step, index, base_ms)
        if step["sandbox"]:
            # A test event is never a forwarding job (audited sandbox or skipped), and a test click emits nothing.
            assert not [j for j in jobs if j.topic.startswith("forward.")], step
            continue
        mixed_live += live_view(attributed)
    reference: list[dict[str, Any]] = []
    for index, step in enumerate(sequence):
        if not step["sandbox"]:
            reference += live_view(live_only.feed(step, index, base_ms)[0])
    assert mixed_live == reference
