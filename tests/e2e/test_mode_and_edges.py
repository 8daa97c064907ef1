"""Promises at the edges, through the whole pipeline (real broker, PostgreSQL, the fakes):
test traffic never shapes live attribution, a reinstall is not a second install for a network, and an
app's registered platform stands in for an event that names none."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.conftest import Pipeline
from tests.support.pipeline import http_call
from tests.support.pipeline import wait_until as wait

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def event(name: str, event_id: str, device_id: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"event_id": event_id, "event_name": name, "event_time": int(time.time()) - 5,
                            "device": {"device_id": device_id, **fields.pop("device", {})}, **fields}
    return body


def attribution(pipeline: Pipeline, app_id: str, device: str, sandbox: bool) -> tuple[int, Any]:
    status, _, body = http_call("GET", f"{pipeline.admin.base}/admin/v1/apps/{app_id}/attribution?device_id={device}"
                                       f"&sandbox={'true' if sandbox else 'false'}", headers=pipeline.admin.headers)
    return status, body


def test_test_traffic_never_shapes_live_attribution(pipeline: Pipeline) -> None:
    app = pipeline.configured_app()
    app_id, live, test = app["app_id"], app["live_key"], app["test_key"]
    link = pipeline.admin.call("POST", f"/apps/{app_id}/links", {"network": "meta", "campaign": "qa"}, expect=201)
    # QA clicks a real link and installs with the test key: the match stays in test state.
    assert http_call("GET", f"{link['url']}?fbclid=IwARtest", headers={"User-Agent": "QA/1"})[0] == 302
    pipeline.send(test, event("install", "t-install", "dev-1", referrer={"fbclid": "IwARtest"},
                              device={"os": "android"}))
    wait(lambda: attribution(pipeline, app_id, "dev-1", sandbox=True)[0] == 200, timeout=30,
         what="the test install attributed")
    assert attribution(pipeline, app_id, "dev-1", sandbox=True)[1]["click_id"] == "IwARtest"
    # A live purchase of the same device: no live install, so nothing learnt from the test install.
    pipeline.send(live, event("purchase", "l-buy-1", "dev-1", device={"os": "android"},
                              revenue={"amount": 3.0, "currency": "USD"}))
    pipeline.audited("l-buy-1", "meta", "skipped")
    status, body = attribution(pipeline, app_id, "dev-1", sandbox=False)
    assert status == 404 and "test install exists" in body["message"]
    # The device's live install is a first install (not a reinstall of the test one) with its own click.
    pipeline.send(live, event("install", "l-install", "dev-1", referrer={"fbclid": "IwARlive"},
                              device={"os": "android"}))
    wait(lambda: attribution(pipeline, app_id, "dev-1", sandbox=False)[0] == 200, timeout=30,
         what="the live install attributed")
    assert attribution(pipeline, app_id, "dev-1", sandbox=False)[1]["click_id"] == "IwARlive"
    pipeline.send(live, event("purchase", "l-buy-2", "dev-1", device={"os": "android"},
                              revenue={"amount": 4.0, "currency": "USD"}))
    pipeline.send(test, event("purchase", "t-buy", "dev-1", device={"os": "android"},
                              revenue={"amount": 5.0, "currency": "USD"}))
    pipeline.audited("l-buy-2", "meta", "delivered")
    pipeline.audited("t-buy", "meta", "sandbox")
    sent = repr(pipeline.meta.requests)
    assert "IwARtest" not in sent and "t-buy" not in sent and "l-buy-1" not in sent
    (delivered,) = [e for e in pipeline.meta.events if e["event_id"] == "l-buy-2"]
    assert delivered["user_data"]["fbc"].endswith(".IwARlive")
    # The test state is untouched by the live traffic.
    assert attribution(pipeline, app_id, "dev-1", sandbox=True)[1]["click_id"] == "IwARtest"


def test_a_reinstall_is_audited_skipped_unless_the_integration_wants_reinstalls(pipeline: Pipeline) -> None:
    plain, opted = pipeline.configured_app(), pipeline.configured_app()
    pipeline.admin.call("PUT", f"/apps/{opted['app_id']}/integrations/tiktok",
                        {"settings": {"tiktok_app_id": "tt-app-1", "forward_reinstalls": True}})
    for app in (plain, opted):
        pipeline.send(app["live_key"], event("install", f"i1-{app['app_id']}", "dev-r", referrer={"ttclid": "E.C.P.r"},
                                             device={"os": "android"}))
    for app in (plain, opted):
        pipeline.audited(f"i1-{app['app_id']}", "tiktok", "delivered")
        pipeline.send(app["live_key"], event("install", f"i2-{app['app_id']}", "dev-r", device={"os": "android"}))
        pipeline.send(app["live_key"], event("purchase", f"p-{app['app_id']}", "dev-r", device={"os": "android"},
                                             revenue={"amount": 2.0, "currency": "USD"}))
    pipeline.audited(f"i2-{plain['app_id']}", "tiktok", "skipped")
    (skip,) = [r for r in pipeline.audit(f"i2-{plain['app_id']}") if r["network"] == "tiktok"]
    assert skip["detail"].startswith("reinstall")
    pipeline.audited(f"i2-{opted['app_id']}", "tiktok", "delivered")  # opted in: sent as an install
    for app in (plain, opted):  # later events still forward under the original attribution
        pipeline.audited(f"p-{app['app_id']}", "tiktok", "delivered")
    purchases = [e for e in pipeline.tiktok.events if e.get("event_id") == f"p-{plain['app_id']}"]
    assert purchases and "E.C.P.r" in repr(purchases[0])


def test_the_apps_platform_stands_in_for_a_missing_device_os(pipeline: Pipeline) -> None:
    app = pipeline.admin.new_app(platform="ios", bundle_id="com.example.ios")
    pipeline.admin.call("PUT", f"/apps/{app['app_id']}/integrations/meta",
                        {"settings": {"dataset_id": "ds-ios"}, "credentials": {"access_token": "meta-token"}})
    # A server-side sender: no device.os, no advertising id.
    pipeline.send(app["live_key"], event("install", "ios-install", "srv-1", referrer={"fbclid": "IwARios"}))
    pipeline.send(app["live_key"], event("purchase", "ios-buy", "srv-1", revenue={"amount": 9.0, "currency": "USD"}))
    pipeline.audited("ios-buy", "meta", "delivered")
    (sent,) = [e for e in pipeline.meta.events if e["event_id"] == "ios-buy"]
    assert sent["app_data"]["extinfo"][0] == "i2"  # Meta's iOS marker, from the app's platform
