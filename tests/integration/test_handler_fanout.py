"""The fanout handler on its own, fed what the attribution handler returns, against a migrated PostgreSQL, no
broker: one job per enabled integration that can use the event, on forward.<network>; the rest audited with why.
Integrations are stored the way the admin API stores them (AdminStore, validated)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from services.admin.store import AdminStore
from services.attribution.consumer import AttributionHandler
from services.fanout.consumer import FanoutHandler
from shared.avro import codec
from shared.kafka.records import InRecord, OutRecord
from shared.kafka.topics import AUDIT_RECORDS
from tests.integration.test_handler_attribution import APP, Feed, sessions  # noqa: F401 (fixture)

pytestmark = pytest.mark.timeout(60)
SECRET = "fanout-test-secret"
GOOGLE = {"settings": {"customer_id": "123-456-7890",
                       "conversion_actions": {"purchase": "customers/1234567890/conversionActions/9"}},
          "credentials": {"developer_token": "d", "client_id": "c", "client_secret": "s", "refresh_token": "r"}}


@pytest.fixture
def store(sessions: sessionmaker[Session]) -> Iterator[AdminStore]:  # noqa: F811
    yield AdminStore(sessions, SECRET)


def decoded(record: OutRecord) -> InRecord:
    schema, value = codec().decode(record.value)
    return InRecord(topic=record.topic, partition=0, offset=1, key=record.key, raw_value=record.value,
                    headers=list(record.headers or []), schema=schema, value=value)


def outputs_of(records: list[OutRecord]) -> dict[str, list[dict[str, Any]]]:
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_topic.setdefault(record.topic, []).append(codec().decode(record.value)[1])
    return by_topic


def test_an_attributed_purchase_goes_to_the_networks_that_can_use_it(
        sessions: sessionmaker[Session], store: AdminStore) -> None:  # noqa: F811
    store.put_integration(APP, "meta", {"settings": {"dataset_id": "ds-1"}, "credentials": {"access_token": "t"}})
    store.put_integration(APP, "tiktok", {"settings": {"tiktok_app_id": "tt-1"}, "credentials": {"access_token": "t"}})
    store.put_integration(APP, "google_ads", GOOGLE)
    feed = Feed()
    attribution = AttributionHandler(sessions, codec())
    click = feed.click({"gclid": "Cj0-click"})
    install = feed.event("install-1", {"device_id": "dev-f1", "os": "android"}, referrer={"gclid": "Cj0-click"})
    purchase = feed.event("purchase-1", {"device_id": "dev-f1", "os": "android"}, name="purchase")
    attributed = attribution([click, install, purchase])
    assert len(attributed) == 2

    inputs = [decoded(r) for r in attributed]
    fanned = FanoutHandler(sessions, codec(), SECRET)(inputs)
    topics = outputs_of(fanned)
    jobs = topics.pop("forward.google_ads")
    assert [(j["event_id"], j["network_event_name"], j["click_id"]) for j in jobs] == [
        ("purchase-1", "customers/1234567890/conversionActions/9", "Cj0-click")]
    audits = {(a["event_id"], a["network"]): (a["status"], a["detail"]) for a in topics.pop(AUDIT_RECORDS)}
    assert topics == {}  # nothing for Meta or TikTok: not their click
    assert audits[("purchase-1", "meta")] == ("skipped", "not attributed to meta")
    assert audits[("purchase-1", "tiktok")] == ("skipped", "not attributed to tiktok")
    assert audits[("install-1", "google_ads")] == ("skipped", "event 'install' is not mapped for google_ads")
    assert audits[("install-1", "meta")][0] == "skipped"
    # A job names the input it came from: a job the broker refuses is dead-lettered as that input.
    assert [out.origin for out in fanned if out.topic == "forward.google_ads"] == [inputs[1]]


def test_opt_ins_disabled_integrations_and_sandbox_events(
        sessions: sessionmaker[Session], store: AdminStore) -> None:  # noqa: F811
    store.put_integration(APP, "meta", {"settings": {"dataset_id": "ds-1", "forward_unattributed": True},
                                        "credentials": {"access_token": "t"}})
    store.put_integration(APP, "tiktok", {"enabled": False, "settings": {"tiktok_app_id": "tt-1"},
                                          "credentials": {"access_token": "t"}})
    feed = Feed()
    attribution = AttributionHandler(sessions, codec())
    organic = attribution([feed.event("install-o", {"device_id": "dev-o", "os": "android"}),
                           feed.event("buy-o", {"device_id": "dev-o", "os": "android"}, name="purchase")])
    fanout = FanoutHandler(sessions, codec(), SECRET)
    topics = outputs_of(fanout([decoded(r) for r in organic]))
    # Meta opted in to unattributed conversions; the disabled TikTok integration is not even audited.
    assert [j["event_id"] for j in topics["forward.meta"]] == ["buy-o"]
    assert {a["network"] for a in topics[AUDIT_RECORDS]} == {"meta"}

    # A test-key event flows through but never reaches a network: audited sandbox.
    sandbox = decoded(organic[1])
    sandbox.value["event"]["sandbox"] = True
    topics = outputs_of(fanout([sandbox]))
    assert list(topics) == [AUDIT_RECORDS]
    assert [(a["network"], a["status"]) for a in topics[AUDIT_RECORDS]] == [("meta", "sandbox")]


def test_a_changed_integration_is_seen_by_the_next_batch(
        sessions: sessionmaker[Session], store: AdminStore) -> None:  # noqa: F811
    store.put_integration(APP, "meta", {"settings": {"dataset_id": "ds-1"}, "credentials": {"access_token": "t"}})
    feed = Feed()
    attributed = AttributionHandler(sessions, codec())(
        [feed.event("buy-c", {"device_id": "dev-c", "os": "android"}, name="purchase")])
    fanout = FanoutHandler(sessions, codec(), SECRET)
    assert "forward.meta" not in outputs_of(fanout([decoded(r) for r in attributed]))
    store.put_integration(APP, "meta", {"settings": {"dataset_id": "ds-1", "forward_unattributed": True}})
    assert [j["event_id"] for j in outputs_of(fanout([decoded(r) for r in attributed]))["forward.meta"]] == ["buy-c"]
