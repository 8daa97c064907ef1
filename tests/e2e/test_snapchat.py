"""Snapchat end to end: a tracking link click with Snap's `ScCid`, an install whose Play referrer carries it in
another case, and a purchase that reaches the fake Snap Conversions API once, upper-cased and with `sc_click_id`.
Nothing here is Snap-specific plumbing: the pipeline finds the network, its forwarder and its fake by name."""

from __future__ import annotations

import hashlib
import time

import pytest

from tests.e2e.conftest import Pipeline
from tests.fakes.snapchat import FakeSnapchat
from tests.support.pipeline import http_call

pytestmark = pytest.mark.slow


def test_a_snap_click_is_credited_and_its_purchase_delivered_once(pipeline: Pipeline) -> None:
    snap = pipeline.fakes["snapchat"]
    assert isinstance(snap, FakeSnapchat)
    app = pipeline.admin.new_app()
    path = f"/apps/{app['app_id']}/integrations/snapchat"
    refused = pipeline.admin.call("PUT", path, {"settings": {}, "credentials": {"access_token": "snap-token"}},
                                  expect=400)
    assert refused["field"] == "settings.snap_app_id"
    pipeline.admin.call("PUT", path, {"settings": {"snap_app_id": "snap-app-1"},
                                      "credentials": {"access_token": "snap-token"}})
    assert pipeline.admin.call("POST", f"{path}/test")["ok"] is True
    assert snap.events == []  # Test Connection's validate records no conversion

    link = pipeline.admin.call("POST", f"/apps/{app['app_id']}/links", {"network": "snapchat", "campaign": "c1"},
                               expect=201)
    assert http_call("GET", f"{link['url']}?ScCid=sc-Click.1")[0] == 302
    now = int(time.time())
    pipeline.send(app["live_key"], {
        "event_id": "snap-install", "event_name": "install", "event_time": now - 30,
        "device": {"device_id": "dev-snap", "os": "android", "gaid": "38400000-8cf0-11bd-b23e-10b96e40000d"},
        "referrer": {"install_referrer": "utm_source=snapchat&sccid=sc-Click.1"}})
    pipeline.send(app["live_key"], {
        "event_id": "snap-buy", "event_name": "purchase", "event_time": now,
        "device": {"device_id": "dev-snap", "os": "android"}, "user": {"email": "snap@example.com"},
        "revenue": {"amount": 2.5, "currency": "usd"}})
    pipeline.audited("snap-buy", "snapchat", "delivered")

    attribution = pipeline.admin.call("GET", f"/apps/{app['app_id']}/attribution?device_id=dev-snap")
    assert (attribution["network"], attribution["click_id_type"], attribution["click_id"]) == (
        "snapchat", "sccid", "sc-Click.1")
    [event] = [e for e in snap.events if e["event_id"] == "snap-buy"]
    assert (event["event_name"], event["action_source"]) == ("PURCHASE", "MOBILE_APP")
    assert event["user_data"]["sc_click_id"] == "sc-Click.1"
    assert event["user_data"]["em"] == [hashlib.sha256(b"snap@example.com").hexdigest()]
    assert event["custom_data"]["currency"] == "USD" and event["custom_data"]["value"] == 2.5
    assert "snap-token" not in repr(pipeline.audit("snap-buy"))
