"""RevenueCat webhooks end to end: accepted, mapped, resolved to the device, forwarded once."""

from __future__ import annotations

import copy
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Pipeline
from tests.support.pipeline import http_call
from tests.support.pipeline import wait_until as wait

pytestmark = pytest.mark.slow

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "revenuecat"
AUTHORIZATION = "Bearer rc-webhook-secret"


def sample(name: str) -> dict[str, Any]:
    if not SAMPLES.is_dir():
        pytest.skip(f"RevenueCat samples not found at {SAMPLES}")
    return dict(json.loads((SAMPLES / name).read_text()))


def webhook(pipeline: Pipeline, app_id: str, body: Any, authorization: str | None = AUTHORIZATION,
            raw: bytes | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    status, _, answer = http_call("POST", f"{pipeline.base}/v1/webhooks/revenuecat/{app_id}", body, headers, raw=raw)
    return status, answer


def initial_purchase(**event_fields: Any) -> dict[str, Any]:
    body = copy.deepcopy(sample("revenuecat_docs__sample-events_1.json"))
    body["event"].update(id=str(uuid.uuid4()), event_timestamp_ms=int(time.time() * 1000), **event_fields)
    return body


def sdk_install(pipeline: Pipeline, key: str, device: str, referrer: dict[str, str], **user: str) -> None:
    pipeline.send(key, {"event_id": f"install-{device}", "event_name": "install", "event_time": int(time.time()) - 30,
                        "device": {"device_id": device, "os": "ios"}, "referrer": referrer,
                        **({"user": user} if user else {})})


def test_revenuecat_purchase_inherits_the_device_attribution_and_is_forwarded_once(pipeline: Pipeline) -> None:
    app = pipeline.configured_app()
    app_id = app["app_id"]
    pipeline.admin.call("PUT", f"/apps/{app_id}/integrations/revenuecat",
                        {"credentials": {"authorization": AUTHORIZATION}})
    sdk_install(pipeline, app["live_key"], "dev-rc", {"fbclid": "IwAR-rc-click"})
    sdk_install(pipeline, app["live_key"], "dev-ext", {"ttclid": "TT-rc-click"}, external_id="user-77")
    for device in ("dev-rc", "dev-ext"):
        url = f"{pipeline.admin.base}/admin/v1/apps/{app_id}/attribution?device_id={device}"
        wait(lambda u=url: http_call("GET", u, headers=pipeline.admin.headers)[0] == 200, timeout=30, what=device)

    # Found through the SDK's device id sent as a subscriber attribute.
    by_attribute = initial_purchase(subscriber_attributes={
        "$apprefer_device_id": {"value": "dev-rc", "updated_at_ms": 1},
        "$email": {"value": "Buyer@Example.com", "updated_at_ms": 1}})
    rc_event_id = f"rc_{by_attribute['event']['id']}"
    assert webhook(pipeline, app_id, by_attribute) == (200, {"ok": True, "event_id": rc_event_id})
    pipeline.audited(rc_event_id, "meta", "delivered")
    [sent] = [e for e in pipeline.meta.events if e.get("event_id") == rc_event_id]
    assert sent["event_name"] == "Subscribe" and sent["user_data"]["fbc"].endswith(".IwAR-rc-click")
    assert sent["custom_data"]["value"] == 4.99 and sent["custom_data"]["currency"] == "usd"  # as Meta's SDK sends it
    assert "Buyer@Example.com".lower() not in repr(pipeline.meta.requests).lower()

    # Found through the app user id, which the SDK sent (hashed) as user.external_id.
    by_user = initial_purchase(app_user_id="user-77", aliases=[], original_app_user_id="user-77",
                               subscriber_attributes={})
    assert webhook(pipeline, app_id, by_user)[0] == 200
    pipeline.audited(f"rc_{by_user['event']['id']}", "tiktok", "delivered")
    assert ("Subscribe", f"rc_{by_user['event']['id']}") in pipeline.tiktok.unique_events

    # RevenueCat retries with the same event id: answered 200, delivered once.
    assert webhook(pipeline, app_id, by_attribute)[0] == 200
    pipeline.audited(rc_event_id, "meta", "skipped")
    assert len([e for e in pipeline.meta.events if e.get("event_id") == rc_event_id]) == 1

    # Sandbox purchases are audited, never forwarded.
    sandbox = initial_purchase(environment="SANDBOX",
                               subscriber_attributes={"$apprefer_device_id": {"value": "dev-rc", "updated_at_ms": 1}})
    assert webhook(pipeline, app_id, sandbox)[0] == 200
    pipeline.audited(f"rc_{sandbox['event']['id']}", "meta", "sandbox")
    assert not [e for e in pipeline.meta.events if e.get("event_id") == f"rc_{sandbox['event']['id']}"]

    # Authorization and bad bodies.
    assert webhook(pipeline, app_id, by_attribute, authorization="Bearer wrong")[0] == 401
    assert webhook(pipeline, app_id, by_attribute, authorization=None)[0] == 401
    assert webhook(pipeline, "app_unknown", by_attribute)[0] == 401
    assert webhook(pipeline, app_id, None, raw=b"{not json")[0] == 400
    status, answer = webhook(pipeline, app_id, {"api_version": "1.0", "event": {"type": "RENEWAL"}})
    assert status == 400 and answer["field"] == "event.id"


def test_every_revenuecat_sample_is_accepted(pipeline: Pipeline) -> None:
    app = pipeline.admin.new_app(platform="ios")
    pipeline.admin.call("PUT", f"/apps/{app['app_id']}/integrations/revenuecat",
                        {"credentials": {"authorization": AUTHORIZATION}})
    names = sorted(p.name for p in SAMPLES.glob("*.json")) if SAMPLES.is_dir() else []
    if not names:
        pytest.skip(f"RevenueCat samples not found at {SAMPLES}")
    for name in names:
        status, answer = webhook(pipeline, app["app_id"], json.loads((SAMPLES / name).read_text()))
        assert status == 200, (name, answer)
