"""Forwarding at real network latency, through the whole pipeline: 40 apps' purchases cost about one
round trip, not forty, and one app's hung endpoint does not hold up the others."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.conftest import Pipeline
from tests.support.pipeline import wait_until as wait

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240), pytest.mark.forwarders("meta")]

APPS = 40
ISOLATION_ENV = {"APPREFER_FORWARD_TIMEOUT_SECONDS": "4", "APPREFER_FORWARD_BREAKER_COOLDOWN_SECONDS": "3"}


def meta_apps(pipeline: Pipeline, n: int, first: int = 0) -> list[dict[str, Any]]:
    apps = []
    for i in range(first, first + n):
        app = pipeline.admin.new_app()
        pipeline.admin.call("PUT", f"/apps/{app['app_id']}/integrations/meta",
                            {"settings": {"dataset_id": f"ds-{i}"}, "credentials": {"access_token": "meta-token"}})
        app["dataset"] = f"ds-{i}"
        apps.append(app)
    return apps


def event(name: str, device: str, **fields: Any) -> dict[str, Any]:
    return {"event_id": f"{name}-{device}", "event_name": name, "event_time": int(time.time()) - 1,
            "device": {"device_id": device, "os": "android"}, **fields}


def purchase_ids(pipeline: Pipeline, apps: list[dict[str, Any]], tag: str) -> set[str]:
    """Sends one attributed purchase per app (its install first); returns the purchases' event ids."""
    for app in apps:
        pipeline.send(app["live_key"], event("install", f"{tag}-{app['dataset']}",
                                             referrer={"fbclid": f"IwAR-{tag}-{app['dataset']}"}))
    for app in apps:
        pipeline.send(app["live_key"], event("purchase", f"{tag}-{app['dataset']}",
                                             revenue={"amount": 1.5, "currency": "USD"}))
    return {f"purchase-{tag}-{app['dataset']}" for app in apps}


def delivered(pipeline: Pipeline) -> set[str]:
    return {str(e.get("event_id")) for e in pipeline.meta.events}


def time_to_deliver(pipeline: Pipeline, apps: list[dict[str, Any]], tag: str) -> float:
    started = time.monotonic()
    expected = purchase_ids(pipeline, apps, tag)
    wait(lambda: expected <= delivered(pipeline), timeout=60, what=f"{tag}: every purchase at Meta")
    return time.monotonic() - started


def test_forty_apps_at_250_ms_cost_about_one_round_trip_more_than_at_once(pipeline: Pipeline) -> None:
    apps = meta_apps(pipeline, APPS)
    time_to_deliver(pipeline, apps[:2], "warm")  # consumer groups joined, caches filled
    instant = time_to_deliver(pipeline, apps, "instant")
    pipeline.meta.set_latency(0.25)
    slow = time_to_deliver(pipeline, apps, "slow")
    # One request at a time would add 40 x 250 ms = 10 s.
    assert slow - instant <= 3.0, (instant, slow)
    assert all(sum(e.get("event_id") == f"purchase-slow-{a['dataset']}" for e in pipeline.meta.events) == 1
               for a in apps)


@pytest.mark.parametrize("pipeline", [ISOLATION_ENV], indirect=True)
def test_a_hung_app_endpoint_does_not_delay_the_other_apps(pipeline: Pipeline) -> None:
    hung, *others = meta_apps(pipeline, APPS + 1)
    time_to_deliver(pipeline, [hung, *others[:2]], "warm")
    pipeline.meta.set_latency(0.1)
    pipeline.meta.hang(f"/{hung['dataset']}/")
    stuck = purchase_ids(pipeline, [hung], "stuck")
    time.sleep(1.0)
    took = time_to_deliver(pipeline, others, "others")
    assert took < 6.0, took  # a few seconds, not the 48 s of three 15 s timeouts in a row
    assert not stuck & delivered(pipeline)
    pipeline.audited(next(iter(stuck)), "meta", "retrying")

    pipeline.meta.unhang(f"/{hung['dataset']}/")
    (stuck_id,) = stuck
    pipeline.audited(stuck_id, "meta", "delivered", timeout=90)  # retried from the retry topic, then delivered
    details = [r["detail"] or "" for r in pipeline.audit(stuck_id) if r["status"] == "retrying"]
    assert any("no answer from meta within" in d or "circuit open" in d or "no answer within" in d
               for d in details), details
    time.sleep(2)
    # Once at the network: a late answer of a hung request would count a second copy.
    assert sum(e.get("event_id") == stuck_id for e in pipeline.meta.events) == 1
    for process in pipeline.processes:
        process.assert_alive()
