"""Outages, permanent errors and SRE replay, through the whole pipeline against fake networks."""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.conftest import Pipeline
from tests.fakes import FakeMeta
from tests.support.pipeline import read_topic, topic_size

pytestmark = [pytest.mark.slow, pytest.mark.forwarders("meta")]


def attributed_install(pipeline: Pipeline, key: str, device: str) -> None:
    pipeline.send(key, {"event_id": f"install-{device}", "event_name": "install", "event_time": int(time.time()) - 60,
                        "device": {"device_id": device, "os": "android"}, "referrer": {"fbclid": f"IwAR-{device}"}})


def purchase(pipeline: Pipeline, key: str, device: str, event_id: str) -> None:
    pipeline.send(key, {"event_id": event_id, "event_name": "purchase", "event_time": int(time.time()),
                        "device": {"device_id": device, "os": "android"},
                        "revenue": {"amount": 1.5, "currency": "EUR"}})


def attributed_purchase(pipeline: Pipeline, key: str, device: str, event_id: str) -> None:
    attributed_install(pipeline, key, device)
    purchase(pipeline, key, device, event_id)


def meta_copies(pipeline: Pipeline, event_id: str) -> int:
    return len([e for e in pipeline.meta.events if e.get("event_id") == event_id])


def test_an_outage_shorter_than_the_retry_budget_loses_nothing(pipeline: Pipeline) -> None:
    app = pipeline.configured_app()
    for n in range(5):
        attributed_install(pipeline, app["live_key"], f"dev-out-{n}")
    for n in range(5):  # installs are not forwarded to Meta: audited skipped once the pipeline saw them
        pipeline.audited(f"install-dev-out-{n}", "meta", "skipped")
    outage = FakeMeta.error_body(2, "Service temporarily unavailable", is_transient=True)
    pipeline.meta.fail_for(5.0, 503, outage, path="/events")
    for n in range(5):
        purchase(pipeline, app["live_key"], f"dev-out-{n}", f"buy-out-{n}")
    for n in range(5):
        pipeline.audited(f"buy-out-{n}", "meta", "delivered", timeout=90)
        assert meta_copies(pipeline, f"buy-out-{n}") == 1
    assert any(r["status"] == "retrying" for n in range(5) for r in pipeline.audit(f"buy-out-{n}"))
    assert topic_size(pipeline.bootstrap, "forward.meta.dlq") == 0
    retried = read_topic(pipeline.bootstrap, "forward.meta.retry", lambda rs: len(rs) >= 1)
    headers = retried[0]["headers"]
    for name in ("retry.due_ms", "retry.attempt", "retry.first_attempt_ms", "retry.last_error",
                 "retry.source_topic", "retry.source_partition", "retry.source_offset"):
        assert headers.get(name), name


def test_retries_run_out_into_the_dead_letter_topic(pipeline: Pipeline) -> None:
    app = pipeline.configured_app()
    pipeline.meta.fail_for(600.0, 500, FakeMeta.error_body(1, "An unknown error occurred", is_transient=True),
                           path="/events")
    attributed_purchase(pipeline, app["live_key"], "dev-down", "buy-down")
    pipeline.audited("buy-down", "meta", "dead_lettered", timeout=90)
    [letter] = [r for r in read_topic(pipeline.bootstrap, "forward.meta.dlq", lambda rs: len(rs) >= 1)
                if r["value"]["event_id"] == "buy-down"]
    assert letter["headers"]["dlq.error"].startswith(b"retries exhausted")
    assert letter["value"]["attempt"] == 5  # the first try and the four delays of APPREFER_RETRY_DELAYS


def test_a_permanent_error_is_dead_lettered_at_once_and_replayed_after_the_fix(pipeline: Pipeline) -> None:
    app = pipeline.configured_app(meta_token="revoked-token")
    app_id = app["app_id"]
    for n in range(3):
        attributed_purchase(pipeline, app["live_key"], f"dev-fix-{n}", f"buy-fix-{n}")
    for n in range(3):
        pipeline.audited(f"buy-fix-{n}", "meta", "rejected")
    assert not any(r["status"] == "retrying" for n in range(3) for r in pipeline.audit(f"buy-fix-{n}"))

    listed = pipeline.apprefer("dlq", "list", "--network", "meta", "--app", app_id, "--json")
    assert listed.returncode == 0, listed.stderr
    letters = [json.loads(line) for line in listed.stdout.splitlines()]
    assert {entry["event_id"] for entry in letters} == {"buy-fix-0", "buy-fix-1", "buy-fix-2"}
    assert all("190" in entry["error"] or "token" in entry["error"].lower() for entry in letters)
    shown = pipeline.apprefer("dlq", "show", letters[0]["position"])
    assert shown.returncode == 0 and json.loads(shown.stdout)["record"]["network"] == "meta"

    dry = pipeline.apprefer("dlq", "replay", "--network", "meta", "--app", app_id, "--dry-run")
    assert dry.returncode == 0 and "would replay 3" in dry.stderr
    time.sleep(2)
    assert sum(meta_copies(pipeline, f"buy-fix-{n}") for n in range(3)) == 0  # a dry run publishes nothing

    pipeline.admin.call("PUT", f"/apps/{app_id}/integrations/meta", {"credentials": {"access_token": "meta-token"}})
    replayed = pipeline.apprefer("dlq", "replay", "--network", "meta", "--app", app_id, "--error", "token")
    assert replayed.returncode == 0 and "replayed 3" in replayed.stderr, replayed.stderr
    for n in range(3):
        pipeline.audited(f"buy-fix-{n}", "meta", "delivered")
        assert meta_copies(pipeline, f"buy-fix-{n}") == 1
        assert any("replayed from forward.meta.dlq" in (r["detail"] or "") for r in pipeline.audit(f"buy-fix-{n}"))
    again = pipeline.apprefer("dlq", "replay", "--network", "meta", "--app", app_id)
    assert again.returncode == 0 and "nothing to replay: 0" in again.stderr


def test_admin_api_lists_dead_letters_with_filters(pipeline: Pipeline) -> None:
    app = pipeline.configured_app(meta_token="revoked-token")
    attributed_purchase(pipeline, app["live_key"], "dev-admin-dlq", "buy-admin-dlq")
    pipeline.audited("buy-admin-dlq", "meta", "rejected")
    listed = pipeline.admin.call("GET", f"/dlq?network=meta&app_id={app['app_id']}")["dead_letters"]
    assert [entry["event_id"] for entry in listed] == ["buy-admin-dlq"]
    assert listed[0]["position"].startswith("forward.meta.dlq:") and listed[0]["error"]
    assert pipeline.admin.call("GET", "/dlq?network=meta&error=no-such-error")["dead_letters"] == []
    assert pipeline.admin.call("GET", "/dlq?network=tiktok")["dead_letters"] == []
    pipeline.admin.call("GET", "/dlq?network=myspace", expect=400)
