"""Erasure and retention through the real pipeline (real broker, real PostgreSQL, every service a process).

A person's click, install and purchase are attributed and forwarded, then erased through the admin API (by
device id) and through `apprefer erase` (by external id and email); the rows are gone or anonymised, the answer
counts them, and `erasure_requests` holds no personal value. Backdated rows are pruned by `apprefer db prune`
(after a dry run) and by the audit service's own pruner, recent ones stay; `apprefer topics create` sets the
topics' retention.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from services.privacy.user_data import hash_user_data
from shared.db.models import (
    AuditEntry,
    AuditEvent,
    Click,
    Delivery,
    DeviceIdentity,
    ErasureRequest,
    Install,
    SkanPostback,
)
from shared.kafka.topics import CLICKS_RAW, EVENTS_RAW, all_topics, create_topics
from shared.settings import DAY_MS
from tests.e2e.conftest import Pipeline
from tests.support.pipeline import REPO, ServiceProcess, http_call, service_env
from tests.support.pipeline import wait_until as wait

pytestmark = pytest.mark.slow

PRUNING_OFF = {"APPREFER_PRUNE_INTERVAL_SECONDS": "0"}  # the test prunes when it says so
BROWSER = "Mozilla/5.0 (Linux; Android 14) Mobile"


@pytest.fixture
def engine(migrated_pg_url: str) -> Iterator[Engine]:
    engine = create_engine(migrated_pg_url)
    yield engine
    engine.dispose()


def person(tag: str) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return {"device_id": f"device-{tag}-{suffix}", "gaid": f"gaid-{tag}-{suffix}", "ttclid": f"E.C.P.{tag}-{suffix}",
            "email": f"{tag}.{suffix}@Example.com", "external_id": f"user-{tag}-{suffix}"}


def live_a_life(pipeline: Pipeline, app: dict[str, Any], who: dict[str, str], engine: Engine) -> None:
    """An ad click, the install it brought, a purchase with the user's email and id: attributed, forwarded."""
    key = {"Authorization": f"Bearer {app['live_key']}"}
    click = {"ttclid": who["ttclid"], "gaid": who["gaid"], "ip": "198.51.100.7", "user_agent": BROWSER}
    assert http_call("POST", f"{pipeline.base}/v1/clicks", click, key)[0] == 202
    wait(lambda: rows(engine, Click, Click.gaid == who["gaid"]) == 1, timeout=30, what="the click stored")
    device = {"device_id": who["device_id"], "os": "android", "gaid": who["gaid"], "ip": "198.51.100.7"}
    pipeline.send(app["live_key"], {"event_id": f"install-{who['device_id']}", "event_name": "install",
                                    "event_time": int(time.time()) - 30, "device": device,
                                    "referrer": {"ttclid": who["ttclid"]}})
    pipeline.send(app["live_key"], {"event_id": f"buy-{who['device_id']}", "event_name": "purchase",
                                    "event_time": int(time.time()), "device": device,
                                    "user": {"email": who["email"], "external_id": who["external_id"]},
                                    "revenue": {"amount": 4.99, "currency": "USD"}})
    pipeline.audited(f"install-{who['device_id']}", "tiktok", "delivered")  # TikTok takes installs
    pipeline.audited(f"buy-{who['device_id']}", "tiktok", "delivered")
    attribution = pipeline.admin.call("GET", f"/apps/{app['app_id']}/attribution?device_id={who['device_id']}")
    assert attribution["attributed"] and attribution["click_id"] == who["ttclid"]


def rows(engine: Engine, model: Any, *conditions: Any) -> int:
    with sessionmaker(engine)() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*conditions)) or 0)


def left_of(engine: Engine, app_id: str, who: dict[str, str]) -> dict[str, int]:
    """What the database still holds that names the person."""
    hashes = hash_user_data({"external_id": who["external_id"]})
    return {
        "clicks": rows(engine, Click, Click.app_id == app_id, Click.gaid == who["gaid"]),
        "installs": rows(engine, Install, Install.app_id == app_id, Install.device_id == who["device_id"]),
        "device_identities": rows(engine, DeviceIdentity, DeviceIdentity.app_id == app_id,
                                  (DeviceIdentity.device_id == who["device_id"])
                                  | (DeviceIdentity.value == hashes["external_id"])),
        "audit_log": rows(engine, AuditEntry, AuditEntry.event_id == f"install-{who['device_id']}",
                          AuditEntry.request_hash.is_not(None)),
    }


def add_postback_with_ip(engine: Engine, app_id: str) -> str:
    transaction_id = f"t-{uuid.uuid4().hex}"
    body = {"transaction-id": transaction_id, "ad-network-id": "example.skadnetwork", "ip": "203.0.113.77"}
    with sessionmaker(engine).begin() as session:
        session.add(SkanPostback(transaction_id=transaction_id, sequence_index=0, app_id=app_id,
                                 signature="skipped", did_win=True, counted_as_install=False,
                                 value_source="network", sources="network", postback=body,
                                 raw_body=json.dumps(body), records=[], duplicates=0,
                                 received_at_ms=int(time.time() * 1000)))
    return transaction_id


@pytest.mark.parametrize("pipeline", [PRUNING_OFF], indirect=True)
def test_a_person_is_erased_through_the_admin_api_and_the_command_line(pipeline: Pipeline, engine: Engine) -> None:
    app = pipeline.configured_app()
    app_id = app["app_id"]
    jane, john, bystander = person("jane"), person("john"), person("other")
    for who in (jane, john, bystander):
        live_a_life(pipeline, app, who, engine)
    transaction_id = add_postback_with_ip(engine, app_id)
    # Identities: the GAID, the hashed external id and the hashed email, each leading to the device.
    present = {"clicks": 1, "installs": 1, "device_identities": 3, "audit_log": 1}
    assert left_of(engine, app_id, jane) == present

    # Through the admin API, by device id: a dry run first changes nothing.
    dry = pipeline.admin.call("POST", f"/apps/{app_id}/erasure", {"device_id": jane["device_id"], "dry_run": True})
    expected = {**present, "skan_postbacks": 1}
    assert dry["counts"] == expected and dry["dry_run"] is True
    assert left_of(engine, app_id, jane) == present
    answer = pipeline.admin.call("POST", f"/apps/{app_id}/erasure", {"device_id": jane["device_id"]})
    assert answer["counts"] == expected and answer["identifiers"] == ["device_id"]
    assert "Kafka" in answer["note"]
    assert left_of(engine, app_id, jane) == dict.fromkeys(present, 0)
    pipeline.admin.call("GET", f"/apps/{app_id}/attribution?device_id={jane['device_id']}", expect=404)
    with sessionmaker(engine)() as session:
        stored = session.get(SkanPostback, (transaction_id, 0))
        assert stored is not None and stored.postback["ip"] == "203.0.113.0"
        assert "203.0.113.77" not in stored.raw_body

    # Bad requests are 400 naming the field; an unknown app is a 404.
    for body, field in (({}, "body"), ({"email": "not-an-email"}, "email"), ({"phone": "12"}, "phone"),
                        ({"device_id": "d", "ip": "1.2.3.4"}, "ip")):
        status, _, error = http_call("POST", f"{pipeline.admin.base}/admin/v1/apps/{app_id}/erasure", body,
                                     pipeline.admin.headers)
        assert status == 400 and error["field"] == field, (body, error)
    pipeline.admin.call("POST", "/apps/app_missing/erasure", {"device_id": "d"}, expect=404)

    # On the command line, by external id and email: the device is found through its identities.
    args = ["erase", "--app", app_id, "--external-id", john["external_id"], "--email", john["email"]]
    dry_run = pipeline.apprefer(*args, "--dry-run", "--json")
    assert dry_run.returncode == 0, dry_run.stderr
    assert json.loads(dry_run.stdout)["counts"] == {**present, "skan_postbacks": 0}  # the IP went already
    assert "would delete or anonymise" in dry_run.stderr
    assert left_of(engine, app_id, john) == present
    done = pipeline.apprefer(*args)
    assert done.returncode == 0, done.stderr
    assert "installs" in done.stdout and "recorded as era_" in done.stderr and "Kafka" in done.stderr
    assert left_of(engine, app_id, john) == dict.fromkeys(present, 0)
    refused = pipeline.apprefer("erase", "--app", app_id, "--email", "nope")
    assert refused.returncode == 2 and "--email" in refused.stderr

    # The bystander keeps everything; later events of the erased are forwarded as anyone's would be.
    assert left_of(engine, app_id, bystander) == present
    assert pipeline.admin.call("GET", f"/apps/{app_id}/attribution?device_id={bystander['device_id']}")["attributed"]

    # Every request is recorded, with the kinds asked and the counts, and no personal value at all.
    with sessionmaker(engine)() as session:
        recorded = list(session.scalars(select(ErasureRequest).order_by(ErasureRequest.id)))
        assert [(r.source, r.dry_run, r.identifiers) for r in recorded] == [
            ("api", True, "device_id"), ("api", False, "device_id"),
            ("cli", True, "external_id,email"), ("cli", False, "external_id,email")]
        assert recorded[1].counts == expected
        text = repr([{c.name: getattr(r, c.name) for c in ErasureRequest.__table__.columns} for r in recorded])
    for who in (jane, john):
        hashed = hash_user_data({"email": who["email"], "external_id": who["external_id"]})
        for value in (*who.values(), who["email"].lower(), *hashed.values()):
            assert value not in text


def backdate(session: Session, app_id: str, tag: str, age_days: int) -> None:
    """One row of each pruned table, `age_days` old."""
    at_ms = int(time.time() * 1000) - age_days * DAY_MS
    session.add_all([
        Click(app_id=app_id, click_key=f"{tag}-click", clicked_at_ms=at_ms, sandbox=False),
        Install(app_id=app_id, device_id=f"{tag}-device", sandbox=False, event_id=f"{tag}-install",
                installed_at_ms=at_ms, attributed=False),
        AuditEntry(audit_id=f"{tag}-audit", app_id=app_id, event_id=f"{tag}-event", network="meta",
                   status="delivered", attempts=1, recorded_at_ms=at_ms),
        SkanPostback(transaction_id=f"{tag}-postback", sequence_index=0, app_id=app_id, signature="skipped",
                     did_win=True, counted_as_install=False, value_source="network", sources="network",
                     postback={}, raw_body="", records=[], duplicates=0, received_at_ms=at_ms),
        Delivery(event_id=f"{tag}-event", network="meta", app_id=app_id, attempts=1, delivered_at_ms=at_ms),
        AuditEvent(app_id=app_id, event_id=f"{tag}-event", first_ms=at_ms, delivered_ms=at_ms),
    ])


TABLES = {"clicks": Click, "installs": Install, "audit_log": AuditEntry, "audit_events": AuditEvent,
          "skan_postbacks": SkanPostback, "deliveries": Delivery}


def tagged(engine: Engine, prefix: str) -> dict[str, int]:
    """Rows of each pruned table that `backdate` made with tags starting with `prefix`."""
    return {
        "clicks": rows(engine, Click, Click.click_key.startswith(prefix)),
        "installs": rows(engine, Install, Install.device_id.startswith(prefix)),
        "audit_log": rows(engine, AuditEntry, AuditEntry.audit_id.startswith(prefix)),
        "audit_events": rows(engine, AuditEvent, AuditEvent.event_id.startswith(prefix)),
        "skan_postbacks": rows(engine, SkanPostback, SkanPostback.transaction_id.startswith(prefix)),
        "deliveries": rows(engine, Delivery, Delivery.event_id.startswith(prefix)),
    }


@pytest.mark.parametrize("pipeline", [PRUNING_OFF], indirect=True)
def test_db_prune_deletes_what_outlived_its_window_and_keeps_the_rest(pipeline: Pipeline, engine: Engine) -> None:
    app = pipeline.configured_app()
    recent = person("recent")
    live_a_life(pipeline, app, recent, engine)
    with sessionmaker(engine).begin() as session:
        for i in range(3):
            backdate(session, app["app_id"], f"old-{i}", age_days=400)  # past every default window
        backdate(session, app["app_id"], "young", age_days=20)  # within every default window

    dry_run = pipeline.apprefer("db", "prune", "--dry-run", "--json")
    assert dry_run.returncode == 0, dry_run.stderr
    assert json.loads(dry_run.stdout) == {"dry_run": True, "deleted": dict.fromkeys(TABLES, 3)}
    assert tagged(engine, "old-") == dict.fromkeys(TABLES, 3)  # a dry run deletes nothing

    pruned = pipeline.apprefer("db", "prune")
    assert pruned.returncode == 0, pruned.stderr
    assert f"deleted {3 * len(TABLES)} rows" in pruned.stderr
    assert all(table in pruned.stdout for table in TABLES)
    assert tagged(engine, "old-") == dict.fromkeys(TABLES, 0)
    assert tagged(engine, "young") == dict.fromkeys(TABLES, 1)
    # The pipeline's own rows are recent: the person's attribution still answers.
    assert rows(engine, Click, Click.gaid == recent["gaid"]) == 1
    assert pipeline.admin.call("GET", f"/apps/{app['app_id']}/attribution?device_id={recent['device_id']}")[
        "attributed"]

    again = pipeline.apprefer("db", "prune", "--json")
    assert json.loads(again.stdout) == {"dry_run": False, "deleted": dict.fromkeys(TABLES, 0)}
    too_short = subprocess.run([sys.executable, "-m", "services.cli", "db", "prune"], cwd=REPO, text=True,
                               capture_output=True, env={**pipeline.env, "APPREFER_RETENTION_CLICKS_DAYS": "30"})
    assert too_short.returncode == 2
    assert too_short.stderr.startswith("apprefer: bad setting APPREFER_RETENTION_CLICKS_DAYS:")
    assert "at least 90 days" in too_short.stderr and tagged(engine, "young") == dict.fromkeys(TABLES, 1)


def test_the_audit_service_prunes_in_the_background_when_asked(fresh_bootstrap: str, migrated_pg_url: str,
                                                                engine: Engine, tmp_path: Path) -> None:
    create_topics(fresh_bootstrap, partitions=1, replication=1)
    with sessionmaker(engine).begin() as session:
        backdate(session, "app_old", "old", age_days=400)
        backdate(session, "app_old", "young", age_days=1)
    env = service_env(fresh_bootstrap, migrated_pg_url, APPREFER_PRUNE_INTERVAL_SECONDS="1")
    audit = ServiceProcess(["run", "audit"], env, tmp_path).start()
    try:
        def pruned() -> bool:
            audit.assert_alive()
            return tagged(engine, "old") == dict.fromkeys(TABLES, 0)

        wait(pruned, timeout=30, what="the audit service to prune the old rows")
        assert tagged(engine, "young") == dict.fromkeys(TABLES, 1)
    finally:
        assert audit.terminate() == 0


def test_topics_are_created_with_the_configured_retention_and_existing_ones_left_alone(
        fresh_bootstrap: str, migrated_pg_url: str) -> None:
    admin = AdminClient({"bootstrap.servers": fresh_bootstrap})
    # An operator's own topic, made before: its retention is theirs.
    admin.create_topics([NewTopic(CLICKS_RAW, num_partitions=1, replication_factor=1,
                                  config={"retention.ms": "3600000"})])[CLICKS_RAW].result(10)
    env = service_env(fresh_bootstrap, migrated_pg_url, APPREFER_TOPIC_RETENTION_MS=str(3 * DAY_MS))
    created = subprocess.run([sys.executable, "-m", "services.cli", "topics", "create"], env=env, cwd=REPO,
                             capture_output=True, text=True, timeout=120)
    assert created.returncode == 0, created.stderr
    assert "3 days" in created.stdout and "existing topics keep their own retention" in created.stdout

    def retention(topic: str) -> str:
        [future] = admin.describe_configs([ConfigResource("topic", topic)]).values()
        return str(future.result(10)["retention.ms"].value)

    assert retention(CLICKS_RAW) == "3600000"
    assert {retention(topic) for topic in all_topics() if topic != CLICKS_RAW} == {str(3 * DAY_MS)}
    assert retention(EVENTS_RAW) == str(3 * DAY_MS)
