"""services.forwarders.snapchat against FakeSnapchat: the module's own requests over real HTTP (the engine's client),
and the fake's documented answers and errors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from services.forwarders import snapchat
from shared.forwarding.http import HttpClient
from shared.forwarding.model import Delivered, Device, ForwardJob, HttpRequest, Integration, Permanent, RetryLater
from tests.fakes import fake_class
from tests.fakes.snapchat import FakeSnapchat

APP = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
TOKEN = "snap-token"
INTEGRATION = Integration(app_id="app1", network="snapchat", settings={"snap_app_id": APP, "bundle_id": "com.acme"},
                          credentials={"access_token": TOKEN})
HASH = "a" * 64


@pytest.fixture
def fake() -> Iterator[FakeSnapchat]:
    with FakeSnapchat(tokens={TOKEN}, snap_app_ids={APP}) as server:
        yield server


@pytest.fixture(scope="module")
def http() -> Iterator[HttpClient]:
    client = HttpClient(timeout=5.0, connect_timeout=1.0)
    yield client
    client.close()


def job(event_id: str = "evt-1", age_s: int = 60, **changes: Any) -> ForwardJob:
    fields: dict[str, Any] = {
        "job_id": f"{event_id}:snapchat", "app_id": "app1", "network": "snapchat", "event_id": event_id,
        "event_name": "purchase", "network_event_name": "PURCHASE", "event_time_ms": (int(time.time()) - age_s) * 1000,
        "device": Device(device_id="d1", gaid="38400000-8cf0-11bd-b23e-10b96e40000d", os="android", ip="203.0.113.7"),
        "click_id_type": "sccid", "click_id": "sc-click-1", "user_hashes": {"em": HASH, "ph": "not-a-hash"},
        "revenue_amount": 4.99, "revenue_currency": "usd",
    }
    return ForwardJob(**{**fields, **changes})


def deliver(http: HttpClient, fake: FakeSnapchat, jobs: list[ForwardJob], token: str | None = None,
            integration: Integration = INTEGRATION) -> list[Any]:
    request = snapchat.build_request(jobs, integration, fake.base_url, token)
    return snapchat.classify(http.send(request), jobs)


def test_the_harness_finds_the_fake_by_the_networks_name() -> None:
    assert fake_class(snapchat.NETWORK) is FakeSnapchat
    dev = FakeSnapchat.for_dev(0)
    assert dev.tokens is None and dev.snap_app_ids is None


def test_a_batch_is_delivered_as_sent(http: HttpClient, fake: FakeSnapchat) -> None:
    outcomes = deliver(http, fake, [job("e1"), job("e2")])
    assert len(outcomes) == 2 and all(isinstance(o, Delivered) and "VALID" in (o.detail or "") for o in outcomes)
    assert [event["event_id"] for event in fake.events] == ["e1", "e2"]
    event = fake.events[0]
    assert (event["event_name"], event["action_source"]) == ("PURCHASE", "MOBILE_APP")
    assert event["user_data"] == {"em": [HASH], "sc_click_id": "sc-click-1", "client_ip_address": "203.0.113.7",
                                  "madid": "38400000-8cf0-11bd-b23e-10b96e40000d"}
    assert event["custom_data"] == {"order_id": "e1", "value": 4.99, "currency": "USD"}
    [recorded] = fake.requests
    assert recorded.path == f"/v3/{APP}/events" and recorded.query == {"access_token": TOKEN}
    assert "access_token" not in recorded.body


def test_a_resend_is_deduplicated_on_event_id(http: HttpClient, fake: FakeSnapchat) -> None:
    assert isinstance(deliver(http, fake, [job("e1")])[0], Delivered)
    assert all(isinstance(o, Delivered) for o in deliver(http, fake, [job("e1"), job("e2")]))
    assert len(fake.events) == 3 and fake.duplicates == 1
    assert set(fake.unique_events) == {(APP, "e1"), (APP, "e2")}


def test_the_stored_token_is_used(http: HttpClient, fake: FakeSnapchat) -> None:
    assert isinstance(deliver(http, fake, [job()], token=None)[0], Delivered)


@pytest.mark.parametrize("token", ["wrong-token", ""])
def test_a_bad_token_is_permanent_and_never_echoed(http: HttpClient, fake: FakeSnapchat, token: str) -> None:
    integration = Integration(app_id="app1", network="snapchat", settings={"snap_app_id": APP},
                              credentials={"access_token": "wrong-token"})
    [outcome] = deliver(http, fake, [job()], token=token or None, integration=integration)
    assert isinstance(outcome, Permanent) and outcome.error_code == "401" and "alert" in outcome.reason
    assert "wrong-token" not in outcome.reason
    assert fake.events == []


def test_a_missing_token_is_401(http: HttpClient, fake: FakeSnapchat) -> None:
    response = http.send(HttpRequest("POST", f"{fake.base_url}/v3/{APP}/events", json={"data": []}))
    assert response.status == 401 and response.json()["reason"] == "Missing access token"


def test_an_unknown_app_id_is_permanent(http: HttpClient, fake: FakeSnapchat) -> None:
    other = Integration(app_id="app1", network="snapchat", settings={"snap_app_id": "nope"},
                        credentials={"access_token": TOKEN})
    [outcome] = deliver(http, fake, [job()], integration=other)
    assert isinstance(outcome, Permanent) and "nope" in outcome.reason and fake.events == []


def test_a_stale_event_gets_invalid_and_pre_check_keeps_it_out(http: HttpClient, fake: FakeSnapchat) -> None:
    old = job("old", age_s=38 * 24 * 3600)
    outcomes = deliver(http, fake, [job("fresh"), old])
    assert all(isinstance(o, Permanent) and o.error_code == "INVALID" and "37 days" in o.reason for o in outcomes)
    assert fake.events == []
    assert isinstance(snapchat.pre_check(old, int(time.time() * 1000)), Permanent)


def test_a_5xx_is_retried_later_then_delivered(http: HttpClient, fake: FakeSnapchat) -> None:
    fake.fail_next(1, 503, FakeSnapchat.answer("FAILED", "service unavailable"), {"Retry-After": "7"})
    [outcome] = deliver(http, fake, [job()])
    assert isinstance(outcome, RetryLater) and outcome.after_seconds == 7.0 and outcome.error_code == "503"
    assert fake.events == []
    assert isinstance(deliver(http, fake, [job()])[0], Delivered)
    assert len(fake.events) == 1


def test_a_rate_limit_is_retried_later(http: HttpClient, fake: FakeSnapchat) -> None:
    fake.rate_limit_next(1, retry_after=3)
    [outcome] = deliver(http, fake, [job()])
    assert isinstance(outcome, RetryLater) and outcome.after_seconds == 3.0 and outcome.error_code == "429"


@pytest.mark.parametrize(("change", "problem"), [
    ({"action_source": "WEB"}, "action_source"),
    ({"event_name": ""}, "event_name"),
    ({"event_id": None}, "event_id"),
    ({"event_time": "1700000000"}, "event_time"),
    ({"user_data": {"em": ["jane@example.com"]}}, "user_data.em"),
    ({"user_data": {"ph": "12345"}}, "user_data.ph"),
    ({"app_data": {"extinfo": ["a2"]}}, "extinfo"),
])
def test_the_fake_refuses_a_malformed_event(http: HttpClient, fake: FakeSnapchat, change: dict[str, Any],
                                            problem: str) -> None:
    body = snapchat.build_request([job()], INTEGRATION, fake.base_url, TOKEN)
    request = HttpRequest("POST", body.url, json={"data": [{**body.json["data"][0], **change}]})
    response = http.send(request)
    assert response.status == 400 and problem in response.json()["reason"]
    [outcome] = snapchat.classify(response, [job()])
    assert isinstance(outcome, Permanent) and problem in outcome.reason
    assert fake.events == []


def test_more_than_2000_events_is_refused(http: HttpClient, fake: FakeSnapchat) -> None:
    jobs = [job(f"e{i}") for i in range(2001)]
    outcomes = deliver(http, fake, jobs)
    assert isinstance(outcomes[0], Permanent) and "2000" in outcomes[0].reason
    assert all(isinstance(o, Delivered) for o in deliver(http, fake, jobs[:2000]))
    assert len(fake.unique_events) == 2000


def test_validate_writes_nothing(http: HttpClient, fake: FakeSnapchat) -> None:
    request = snapchat.build_request([job()], INTEGRATION, fake.base_url, TOKEN)
    validate = HttpRequest("POST", request.url.replace("/events?", "/events/validate?"), json=request.json)
    response = http.send(validate)
    assert response.status == 200 and response.json()["status"] == "VALID"
    assert response.json()["events"] == [{"index": 0, "status": "VALID", "reason": ""}]
    assert fake.events == [] and fake.unique_events == {} and len(fake.test_events) == 1


def test_test_connection_ok(http: HttpClient, fake: FakeSnapchat) -> None:
    check = snapchat.test_result(http.send(snapchat.test_request(INTEGRATION, fake.base_url, None)))
    assert check.ok, check.detail
    assert fake.requests[-1].path == f"/v3/{APP}/events/validate"
    assert fake.events == []


@pytest.mark.parametrize(("settings", "token", "expected"), [
    ({"snap_app_id": APP}, "wrong-token", "refused the access token"),
    ({"snap_app_id": "nope"}, TOKEN, "nope not found"),
])
def test_test_connection_not_ok(http: HttpClient, fake: FakeSnapchat, settings: dict[str, str], token: str,
                                expected: str) -> None:
    integration = Integration(app_id="app1", network="snapchat", settings=settings, credentials={})
    check = snapchat.test_result(http.send(snapchat.test_request(integration, fake.base_url, token)))
    assert not check.ok and expected in check.detail and token not in check.detail
    assert fake.events == [] and fake.test_events == []


def test_test_connection_during_an_outage_is_not_ok(http: HttpClient, fake: FakeSnapchat) -> None:
    fake.fail_next(1, 502, {"error": "bad gateway"})
    check = snapchat.test_result(http.send(snapchat.test_request(INTEGRATION, fake.base_url, None)))
    assert not check.ok and "502" in check.detail
