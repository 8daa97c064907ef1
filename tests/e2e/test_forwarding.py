"""The whole pipeline against fake networks: gateway -> attribution -> fanout -> forwarders -> fakes -> audit.

Real broker, real PostgreSQL, every service its own process, the networks real HTTP servers that
follow their documented contracts (tests/fakes/).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest

from tests.e2e.conftest import CONVERSION_ACTION, Pipeline
from tests.support.pipeline import read_topic

pytestmark = pytest.mark.slow

def install(device: str, referrer: dict[str, str]) -> dict[str, Any]:
    return {"event_id": f"install-{device}", "event_name": "install", "event_time": int(time.time()) - 60,
            "device": {"device_id": device, "os": "android", "ip": "203.0.113.5", "gaid": f"gaid-{device}"},
            "referrer": referrer}


def purchase(device: str, event_id: str) -> dict[str, Any]:
    return {"event_id": event_id, "event_name": "purchase", "event_time": int(time.time()),
            "device": {"device_id": device, "os": "android", "ip": "203.0.113.5"},
            "user": {"email": f" {device}@Example.com ", "phone": "+1 650 555 0100"},
            "revenue": {"amount": 19.99, "currency": "usd"}}


def test_conversions_reach_each_network_once_with_click_ids_and_are_audited(pipeline: Pipeline) -> None:
    app = pipeline.configured_app()
    live, test = app["live_key"], app["test_key"]
    clicks = {"meta": ("fbclid", "IwAR-Fb.Click_1"), "google_ads": ("gclid", "Cj0KCQ-google-1"),
              "tiktok": ("ttclid", "E.C.P.tiktok-1")}
    for network, (click_type, click_id) in clicks.items():
        pipeline.send(live, install(f"dev-{network}", {click_type: click_id}))
    pipeline.audited("install-dev-tiktok", "tiktok", "delivered")  # TikTok takes installs (InstallApp)
    pipeline.tiktok.rate_limit_next(1)  # TikTok's 40100 (HTTP 200): retried, then delivered
    for network in clicks:
        pipeline.send(live, purchase(f"dev-{network}", f"buy-{network}"))
    # Sandbox: attributed to Meta, sent with the pk_test_ key: audited, never forwarded.
    pipeline.send(test, install("dev-sandbox", {"fbclid": "IwAR-sandbox"}))
    pipeline.send(test, purchase("dev-sandbox", "buy-sandbox"))

    for network in clicks:
        pipeline.audited(f"buy-{network}", network, "delivered")
    pipeline.audited("buy-sandbox", "meta", "sandbox")

    # Meta: once, with fbc carrying the fbclid byte for byte and the gateway's hashes.
    meta_events = [e for e in pipeline.meta.events if e.get("event_id") == "buy-meta"]
    assert len(meta_events) == 1
    user_data = meta_events[0]["user_data"]
    assert user_data["fbc"].startswith("fb.1.") and user_data["fbc"].endswith(".IwAR-Fb.Click_1")
    expected_em = hashlib.sha256(b"dev-meta@example.com").hexdigest()
    assert expected_em in (user_data["em"] if isinstance(user_data["em"], list) else [user_data["em"]])
    assert meta_events[0]["event_name"] == "Purchase" and meta_events[0]["action_source"] == "app"
    assert "dev-meta@example.com" not in repr(pipeline.meta.requests)

    # Google Ads: the conversion with its gclid and order id.
    conversion = pipeline.google.conversions[(CONVERSION_ACTION, "buy-google_ads")]
    assert conversion["gclid"] == "Cj0KCQ-google-1" and conversion["currencyCode"] == "USD"

    # TikTok: asked twice (rate limited once), holds it once.
    asked = [r for r in pipeline.tiktok.requests if "buy-tiktok" in repr(r.body)]
    assert len(asked) == 2
    assert ("Purchase", "buy-tiktok") in pipeline.tiktok.unique_events
    assert pipeline.tiktok.unique_events[("Purchase", "buy-tiktok")]["user"]["ttclid"] == "E.C.P.tiktok-1"

    # Nothing crossed networks, nothing from the sandbox went anywhere.
    assert not [e for e in pipeline.meta.events if e.get("event_id") in ("buy-google_ads", "buy-tiktok")]
    assert "buy-sandbox" not in repr(pipeline.meta.requests) + repr(pipeline.tiktok.requests)
    assert not [k for k in pipeline.google.conversions if k[1] == "buy-sandbox"]
    # The purchase of a device attributed elsewhere is audited as skipped for the others.
    assert any(r["network"] == "meta" and r["status"] == "skipped" for r in pipeline.audit("buy-google_ads"))

    # Google: an expired token is refreshed once and the upload then succeeds.
    issued = pipeline.google.tokens_issued
    pipeline.google.expire_tokens()
    pipeline.send(live, purchase("dev-google_ads", "buy-google_ads-2"))
    pipeline.audited("buy-google_ads-2", "google_ads", "delivered")
    assert pipeline.google.tokens_issued == issued + 1
    assert (CONVERSION_ACTION, "buy-google_ads-2") in pipeline.google.conversions


def test_meta_expired_token_is_dead_lettered_and_test_connection_reports_it(pipeline: Pipeline) -> None:
    app = pipeline.configured_app(meta_token="revoked-token")
    app_id = app["app_id"]
    pipeline.send(app["live_key"], install("dev-x", {"fbclid": "IwAR-x"}))
    pipeline.send(app["live_key"], purchase("dev-x", "buy-x"))
    pipeline.audited("buy-x", "meta", "rejected")
    [rejected] = [r for r in pipeline.audit("buy-x") if r["status"] == "rejected"]
    assert "190" in (rejected["error_code"] or "") + (rejected["detail"] or "")
    letters = read_topic(pipeline.bootstrap, "forward.meta.dlq", lambda rs: len(rs) >= 1)
    assert letters[0]["value"]["event_id"] == "buy-x"
    assert b"190" in letters[0]["headers"]["dlq.error"] or b"token" in letters[0]["headers"]["dlq.error"].lower()
    assert not pipeline.meta.unique_events

    bad = pipeline.admin.call("POST", f"/apps/{app_id}/integrations/meta/test")
    assert bad["ok"] is False and bad["detail"]
    good_app = pipeline.configured_app()
    for network in ("meta", "google_ads", "tiktok"):
        answer = pipeline.admin.call("POST", f"/apps/{good_app['app_id']}/integrations/{network}/test")
        assert answer["ok"] is True, (network, answer)
    assert not pipeline.google.conversions and not pipeline.tiktok.unique_events  # dry runs record nothing
