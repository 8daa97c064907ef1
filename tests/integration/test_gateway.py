"""The gateway process against the real broker and PostgreSQL: what reaches Kafka, and what does not."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.db.migrate import upgrade
from shared.kafka.topics import CLICKS_RAW, EVENTS_RAW, create_topics
from tests.support.pipeline import ADMIN_TOKEN, AdminApi, http_call, read_topic, service_env, start_edge, topic_size
from tests.support.postgres import create_database


class Env:
    def __init__(self, base: str, bootstrap: str, admin: AdminApi, app: dict[str, Any]) -> None:
        self.base, self.bootstrap, self.admin, self.app = base, bootstrap, admin, app

    def post_events(self, body: Any, key: str | None = None, raw: bytes | None = None,
                    headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
        sent_headers = {"Authorization": f"Bearer {key or self.app['live_key']}", "Content-Type": "application/json",
                        **(headers or {})}
        return http_call("POST", f"{self.base}/v1/events", body, sent_headers, raw=raw)


@pytest.fixture(scope="module")
def env(postgres_server_url: str, module_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    bootstrap = module_bootstrap
    database_url = create_database(postgres_server_url, f"gw_{uuid.uuid4().hex}")
    upgrade(database_url)
    create_topics(bootstrap, partitions=3, replication=1)
    log_dir: Path = tmp_path_factory.mktemp("gateway")
    edge = start_edge(service_env(bootstrap, database_url, APPREFER_GATEWAY_MAX_BODY_BYTES="200000"), log_dir)
    admin = edge.admin
    try:
        yield Env(edge.base, bootstrap, admin, admin.new_app())
    finally:
        edge.terminate()


def event(**overrides: Any) -> dict[str, Any]:
    body = {"event_id": uuid.uuid4().hex, "event_name": "purchase", "event_time": int(time.time()),
            "device": {"device_id": "dev-1", "os": "android"}}
    body.update(overrides)
    return body


def events_with_ids(env: Env, ids: set[str]) -> list[dict[str, Any]]:
    records = read_topic(env.bootstrap, EVENTS_RAW,
                         lambda rs: ids <= {r["value"]["event_id"] for r in rs})
    return [r for r in records if r["value"]["event_id"] in ids]


def test_single_event_is_acknowledged_and_on_the_topic_with_hashed_user_data(env: Env) -> None:
    sent = event(user={"email": "  Jane.Doe@Example.COM ", "phone": "+1 (650) 555-1212"},
                 revenue={"amount": 9.99, "currency": "usd"}, coupon="SPRING")
    status, _, body = env.post_events(sent, headers={"User-Agent": "DemoApp/1.0"})
    assert (status, body) == (202, {"accepted": 1})

    [record] = events_with_ids(env, {sent["event_id"]})
    value = record["value"]
    assert record["key"] == f"{env.app['app_id']}:dev-1".encode()
    assert value["app_id"] == env.app["app_id"] and value["sandbox"] is False
    assert value["device"]["ip"] == "127.0.0.1" and value["device"]["user_agent"] == "DemoApp/1.0"
    assert value["revenue_currency"] == "USD" and value["revenue_amount"] == 9.99
    assert '"coupon":"SPRING"' in value["properties_json"]
    import hashlib

    assert value["user_hashes"]["em"] == hashlib.sha256(b"jane.doe@example.com").hexdigest()
    assert value["user_hashes"]["ph"] == hashlib.sha256(b"16505551212").hexdigest()
    assert "Jane" not in repr(value) and "555-1212" not in repr(value)


def test_batch_and_sandbox_key(env: Env) -> None:
    batch = [event(device={"device_id": f"dev-{i}"}) for i in range(50)]
    status, _, body = env.post_events({"events": batch}, key=env.app["test_key"])
    assert (status, body) == (202, {"accepted": 50})
    records = events_with_ids(env, {e["event_id"] for e in batch})
    assert len(records) == 50 and all(r["value"]["sandbox"] for r in records)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"event_name": "x", "event_time": 1, "device": {"device_id": "d"}}, "event_id"),
        ({"events": [{"event_id": "a", "event_name": "x", "event_time": 1700000000, "device": {"device_id": "d"}},
                     {"event_id": "b", "event_name": "x", "event_time": 1700000000, "device": {}}]},
         "events[1].device.device_id"),
        ({"event_id": "a", "event_name": "x", "event_time": "yesterday", "device": {"device_id": "d"}}, "event_time"),
        ({"event_id": "a", "event_name": "x", "event_time": 4102444800, "device": {"device_id": "d"}}, "event_time"),
        ({"event_id": "a", "event_name": "x", "event_time": 1700000000, "device": {"device_id": "d", "imei": "1"}},
         "device.imei"),
        ({"event_id": "a", "event_name": "x", "event_time": 1700000000, "device": {"device_id": "d"},
          "user": {"email": "not-an-email"}}, "user.email"),
        ({"event_id": "a", "event_name": "x", "event_time": 1700000000, "device": {"device_id": "jane@example.com"}},
         "device.device_id"),
        ([1, 2], "body"),
        *[({"event_id": "a", "event_name": "purchase", "event_time": 1700000000, "device": {"device_id": "d"},
            "revenue": {"amount": amount, "currency": "USD"}}, "revenue.amount")
          for amount in (-50, 1e308, 2**70, 1_000_001)],
        ({"events": [{"event_id": "a", "event_name": "x", "event_time": 1700000000, "device": {"device_id": "d"}},
                     {"event_id": "b", "event_name": "purchase", "event_time": 1700000000,
                      "device": {"device_id": "d"}, "revenue": {"amount": 1e308, "currency": "USD"}}]},
         "events[1].revenue.amount"),
    ],
)
def test_bad_input_is_400_naming_the_field_and_nothing_is_produced(env: Env, body: Any, field: str) -> None:
    before = topic_size(env.bootstrap, EVENTS_RAW)
    status, _, answer = env.post_events(body)
    assert status == 400, answer
    assert answer["field"] == field
    assert topic_size(env.bootstrap, EVENTS_RAW) == before


def test_revenue_bound_is_stated_and_an_app_may_raise_it(env: Env) -> None:
    def purchase(amount: float) -> dict[str, Any]:
        return event(revenue={"amount": amount, "currency": "IDR"})

    assert env.app["max_revenue_amount"] == 1_000_000
    status, _, answer = env.post_events(purchase(-50))
    assert (status, answer["field"], answer["message"]) == (400, "revenue.amount", "must be between 0 and 1000000")
    status, _, answer = env.post_events({"events": [purchase(0), purchase(1_000_000)]})
    assert (status, answer) == (202, {"accepted": 2})
    assert env.post_events(purchase(5_000_000))[0] == 400

    raised = env.admin.new_app(max_revenue_amount=5_000_000)
    assert raised["max_revenue_amount"] == 5_000_000
    assert env.admin.call("GET", f"/apps/{raised['app_id']}")["max_revenue_amount"] == 5_000_000
    sent = purchase(5_000_000)
    status, _, answer = env.post_events(sent, key=raised["live_key"])
    assert (status, answer) == (202, {"accepted": 1})
    [record] = events_with_ids(env, {sent["event_id"]})
    assert (record["value"]["revenue_amount"], record["value"]["revenue_currency"]) == (5_000_000, "IDR")
    status, _, answer = env.post_events(purchase(5_000_001), key=raised["live_key"])
    assert (status, answer["message"]) == (400, "must be between 0 and 5000000")

    for bound in (0, -1, 1e13, "5000000"):
        answer = env.admin.call("POST", "/apps", {"name": "x", "platform": "ios", "max_revenue_amount": bound},
                                expect=400)
        assert answer["field"] == "max_revenue_amount"


def test_too_many_events_malformed_json_and_oversized_body(env: Env) -> None:
    status, _, answer = env.post_events({"events": [event() for _ in range(501)]})
    assert status == 400 and answer["field"] == "events"
    status, _, answer = env.post_events(None, raw=b'{"event_id": ')
    assert status == 400 and answer["error"] == "invalid_json"
    status, _, _ = env.post_events(None, raw=b'{"pad": "' + b"x" * 250_000 + b'"}')
    assert status == 413


def test_unknown_or_missing_key_is_401(env: Env) -> None:
    assert env.post_events(event(), key="pk_live_unknown")[0] == 401
    status, _, _ = http_call("POST", f"{env.base}/v1/events", event(), {"Content-Type": "application/json"})
    assert status == 401


def test_tracking_link_records_the_click_and_redirects_to_the_store(env: Env) -> None:
    link = env.admin.call("POST", f"/apps/{env.app['app_id']}/links", {"network": "google_ads", "campaign": "c1"},
                          expect=201)
    gclid = f"Cj0K{uuid.uuid4().hex}"
    status, headers, _ = http_call("GET", f"{env.base}/c/{link['link_id']}?gclid={gclid}&ad_id=77&utm_x=y",
                                   headers={"User-Agent": "Mozilla/5.0"})
    assert status == 302
    assert headers["location"].startswith("https://play.google.com/store/apps/details?id=com.example&referrer=")
    records = read_topic(env.bootstrap, CLICKS_RAW, lambda rs: any(r["value"]["click_id"] == gclid for r in rs))
    [click] = [r["value"] for r in records if r["value"]["click_id"] == gclid]
    assert click["click_key"] in headers["location"]
    assert (click["network"], click["campaign"], click["click_id_type"]) == ("google_ads", "c1", "gclid")
    assert click["properties"] == {"ad_id": "77", "utm_x": "y"} and click["fingerprint"]
    assert http_call("GET", f"{env.base}/c/lnk_unknown")[0] == 404


def test_server_to_server_click(env: Env) -> None:
    headers = {"Authorization": f"Bearer {env.app['live_key']}", "Content-Type": "application/json"}
    status, _, answer = http_call("POST", f"{env.base}/v1/clicks",
                                  {"ttclid": "TT-1", "ip": "203.0.113.9", "user_agent": "UA", "campaign": "c9"},
                                  headers)
    assert status == 202
    records = read_topic(env.bootstrap, CLICKS_RAW,
                         lambda rs: any(r["value"]["click_key"] == answer["click_key"] for r in rs))
    [click] = [r["value"] for r in records if r["value"]["click_key"] == answer["click_key"]]
    assert (click["network"], click["click_id"], click["campaign"]) == ("tiktok", "TT-1", "c9")
    status, _, answer = http_call("POST", f"{env.base}/v1/clicks", {"ip": 5}, headers)
    assert status == 400 and answer["field"] == "ip"


def test_admin_api_guards_and_never_returns_credentials(env: Env) -> None:
    assert http_call("GET", f"{env.admin.base}/admin/v1/apps")[0] == 401
    assert http_call("GET", f"{env.admin.base}/admin/v1/apps", headers={"Authorization": "Bearer wrong"})[0] == 401
    app_id = env.app["app_id"]
    stored = env.admin.call("PUT", f"/apps/{app_id}/integrations/meta",
                            {"settings": {"dataset_id": "123"}, "credentials": {"access_token": "EAAB-secret"}})
    assert stored["credentials_set"] is True and "EAAB-secret" not in repr(stored)
    shown = env.admin.call("GET", f"/apps/{app_id}/integrations/meta")
    assert shown["settings"] == {"dataset_id": "123"} and "credentials" not in shown
    env.admin.call("PUT", f"/apps/{app_id}/integrations/myspace", {}, expect=404)
    answer = env.admin.call("POST", "/apps", {"name": "x", "platform": "windows"}, expect=400)
    assert answer["field"] == "platform"
    env.admin.call("GET", f"/apps/{app_id}/attribution?device_id=never-seen", expect=404)


def test_health_and_metrics(env: Env) -> None:
    assert http_call("GET", f"{env.base}/healthz")[0] == 200
    assert http_call("GET", f"{env.base}/readyz")[0] == 200
    status, _, body = http_call("GET", f"{env.base}/metrics")
    assert status == 200 and b"apprefer_events_accepted_total" in body


def test_the_gateway_has_no_admin_api(env: Env) -> None:
    """The admin API is the admin service's (its own port): on the public port it is not found, whoever asks."""
    for headers in ({}, {"Authorization": f"Bearer {ADMIN_TOKEN}"}, {"Authorization": "Bearer wrong"}):
        for method, path in (("GET", "/admin/v1/apps"), ("POST", "/admin/v1/apps"),
                             ("GET", f"/admin/v1/apps/{env.app['app_id']}")):
            body = {"name": "x", "platform": "ios"} if method == "POST" else None
            status, _, answer = http_call(method, f"{env.base}{path}", body, headers)
            assert status == 404, (method, path, headers, status, answer)
    status, _, document = http_call("GET", f"{env.base}/openapi.json")
    assert status == 200 and "/v1/events" in document["paths"]
    assert not [path for path in document["paths"] if path.startswith("/admin")], list(document["paths"])
