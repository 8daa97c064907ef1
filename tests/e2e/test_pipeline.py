"""End to end on the real broker and PostgreSQL: gateway and attribution as separate processes."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from sqlalchemy import create_engine, func, select

from shared.db.models import Click
from shared.kafka.topics import EVENTS_ATTRIBUTED, create_topics
from tests.support.pipeline import (
    ServiceProcess,
    http_call,
    read_topic,
    service_env,
    start_edge,
    wait_until,
)

pytestmark = pytest.mark.slow


def send(base: str, key: str, body: Any, user_agent: str = "DemoApp/2.0 (Android 14)") -> None:
    status, _, answer = http_call("POST", f"{base}/v1/events", body,
                                  {"Authorization": f"Bearer {key}", "User-Agent": user_agent})
    assert status == 202, answer


def install(device_id: str, **fields: Any) -> dict[str, Any]:
    return {"event_id": f"install-{device_id}", "event_name": "install", "event_time": int(time.time()),
            "device": {"device_id": device_id, "os": "android", **fields.pop("device", {})}, **fields}


def attributed_by_event_id(bootstrap: str, event_ids: set[str]) -> dict[str, dict[str, Any]]:
    records = read_topic(bootstrap, EVENTS_ATTRIBUTED,
                         lambda rs: event_ids <= {r["value"]["event"]["event_id"] for r in rs}, timeout=60)
    return {r["value"]["event"]["event_id"]: r["value"] for r in records}


def test_click_install_purchase_attributed_on_postgres(fresh_bootstrap: str, migrated_pg_url: str,
                                                        tmp_path: Path) -> None:
    create_topics(fresh_bootstrap, partitions=3, replication=1)
    env = service_env(fresh_bootstrap, migrated_pg_url)
    edge = start_edge(env, tmp_path)
    base, admin = edge.base, edge.admin
    attribution = ServiceProcess(["run", "attribution"], env, tmp_path).start()
    try:
        app = admin.new_app()
        app_id, key = app["app_id"], app["live_key"]
        link = admin.call("POST", f"/apps/{app_id}/links", {"network": "google_ads", "campaign": "spring"},
                          expect=201)
        browser = "Mozilla/5.0 (Linux; Android 14) Chrome/120"

        # 1. A tracking-link click whose key comes back through the Play install referrer.
        gclid = f"Cj0K-{uuid.uuid4().hex}"
        status, headers, _ = http_call("GET", f"{base}/c/{link['link_id']}?gclid={gclid}",
                                       headers={"User-Agent": browser})
        assert status == 302
        play_referrer = unquote(headers["location"].split("referrer=", 1)[1])
        # 2. A server-to-server click with an advertising id, and 3. one only a fingerprint can match.
        s2s = {"Authorization": f"Bearer {key}"}
        click = {"fbclid": "FbClick.XYZ", "gaid": "AAAA-1111", "ip": "198.51.100.7", "user_agent": browser}
        assert http_call("POST", f"{base}/v1/clicks", click, s2s)[0] == 202
        assert http_call("POST", f"{base}/v1/clicks", {"ttclid": "TTclick-9", "ip": "127.0.0.1",
                                                        "user_agent": "DemoApp/2.0 (Android 14)"}, s2s)[0] == 202
        # Clicks precede installs in life too: wait until the consumer has stored them (a click and
        # its install on different partitions may otherwise be processed in either order).
        engine = create_engine(migrated_pg_url)

        def clicks_stored() -> bool:
            with engine.connect() as connection:
                return connection.scalar(select(func.count()).select_from(Click)) == 3

        wait_until(clicks_stored, timeout=60, what="the three clicks to be stored")
        engine.dispose()

        send(base, key, install("dev-referrer", referrer={"install_referrer": f"utm_source=x&{play_referrer}"}),
             user_agent="Other/1.0")
        send(base, key, install("dev-gaid", device={"gaid": "aaaa-1111"}), user_agent="Other/1.0")
        send(base, key, install("dev-fingerprint"))
        send(base, key, install("dev-organic", device={"ip": "192.0.2.1"}))
        purchase = {"event_id": "purchase-1", "event_name": "purchase", "event_time": int(time.time()),
                    "device": {"device_id": "dev-referrer"}, "revenue": {"amount": 4.99, "currency": "EUR"}}
        send(base, key, purchase)

        events = attributed_by_event_id(fresh_bootstrap, {
            "install-dev-referrer", "install-dev-gaid", "install-dev-fingerprint", "install-dev-organic", "purchase-1"})
        by_device = {
            device: admin.call("GET", f"/apps/{app_id}/attribution?device_id={device}")
            for device in ("dev-referrer", "dev-gaid", "dev-fingerprint", "dev-organic")
        }
        assert {k: by_device["dev-referrer"][k] for k in ("attributed", "network", "click_id_type", "click_id",
                                                           "campaign", "matched_by")} == {
            "attributed": True, "network": "google_ads", "click_id_type": "gclid", "click_id": gclid,
            "campaign": "spring", "matched_by": "click_id"}
        assert (by_device["dev-gaid"]["network"], by_device["dev-gaid"]["click_id"],
                by_device["dev-gaid"]["matched_by"]) == ("meta", "FbClick.XYZ", "device_id")
        assert (by_device["dev-fingerprint"]["network"], by_device["dev-fingerprint"]["matched_by"]) == (
            "tiktok", "fingerprint")
        assert by_device["dev-organic"]["attributed"] is False

        # The purchase carries the device's attribution downstream.
        bought = events["purchase-1"]
        assert bought["attribution"]["attributed"] is True
        assert (bought["attribution"]["network"], bought["attribution"]["click_id"]) == ("google_ads", gclid)
        assert bought["event"]["revenue_amount"] == 4.99 and bought["event"]["app_id"] == app_id
        assert events["install-dev-organic"]["attribution"]["attributed"] is False
    finally:
        attribution.terminate()
        edge.terminate()


def test_reinstall_keeps_the_original_attribution(fresh_bootstrap: str, migrated_pg_url: str,
                                                  tmp_path: Path) -> None:
    create_topics(fresh_bootstrap, partitions=3, replication=1)
    env = service_env(fresh_bootstrap, migrated_pg_url)
    edge = start_edge(env, tmp_path)
    base, admin = edge.base, edge.admin
    attribution = ServiceProcess(["run", "attribution"], env, tmp_path).start()
    try:
        app = admin.new_app()
        key = app["live_key"]
        send(base, key, install("dev-1", referrer={"gclid": "G-first"}))
        attributed_by_event_id(fresh_bootstrap, {"install-dev-1"})
        # The same device installs again, now with a different click id: inside 90 days, not a new install.
        again = install("dev-1", referrer={"ttclid": "T-second"})
        again["event_id"] = "install-dev-1-again"
        send(base, key, again)
        events = attributed_by_event_id(fresh_bootstrap, {"install-dev-1-again"})
        assert events["install-dev-1-again"]["attribution"]["reinstall"] is True
        assert events["install-dev-1-again"]["attribution"]["click_id"] == "G-first"
        shown = admin.call("GET", f"/apps/{app['app_id']}/attribution?device_id=dev-1")
        assert (shown["click_id"], shown["install_event_id"]) == ("G-first", "install-dev-1")
    finally:
        attribution.terminate()
        edge.terminate()


def test_attribution_waits_out_a_database_outage_without_losing_events(fresh_bootstrap: str,
                                                                        migrated_pg_url: str,
                                                                        tmp_path: Path) -> None:
    """Records that cannot be written are not committed: a consumer pointed at a database that
    refuses connections dead-letters nothing, and after a restart with the right URL all arrive."""
    create_topics(fresh_bootstrap, partitions=3, replication=1)
    good = service_env(fresh_bootstrap, migrated_pg_url)
    edge = start_edge(good, tmp_path)
    base = edge.base
    broken = service_env(fresh_bootstrap, "postgresql+psycopg://postgres@127.0.0.1:1/none")
    attribution = ServiceProcess(["run", "attribution"], broken, tmp_path).start()
    try:
        key = edge.admin.new_app()["live_key"]
        send(base, key, install("dev-outage"))
        time.sleep(8)  # joined, polled, and retrying the transient failure
        attribution.kill()
        attribution = ServiceProcess(["run", "attribution"], good, tmp_path).start()
        events = attributed_by_event_id(fresh_bootstrap, {"install-dev-outage"})
        assert events["install-dev-outage"]["attribution"]["attributed"] is False
        status, _, _ = http_call("GET", f"{base}/readyz")
        assert status == 200
        from tests.support.pipeline import topic_size

        assert topic_size(fresh_bootstrap, "events.raw.dlq") == 0
    finally:
        attribution.terminate()
        edge.terminate()
