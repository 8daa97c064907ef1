"""Erasure and retention against a migrated database, PostgreSQL and SQLite alike (no broker)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from services.privacy.erasure import ERASED, erase, hash_identifiers
from services.privacy.retention import count_expired, prune, windows
from services.privacy.user_data import hash_user_data
from shared.db.migrate import upgrade
from shared.db.models import (
    App,
    AuditEntry,
    AuditEvent,
    Click,
    Delivery,
    DeviceIdentity,
    ErasureRequest,
    Install,
    ReportStaleDay,
    SkanPostback,
)
from shared.db.session import make_engine, make_sessionmaker
from shared.settings import DAY_MS, Settings

NOW = int(time.time() * 1000)
EMAIL, EXTERNAL_ID = "jane@example.com", "user-42"
HASHES = hash_user_data({"email": EMAIL, "external_id": EXTERNAL_ID})


@pytest.fixture(params=["postgresql", "sqlite"])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    if request.param == "postgresql":
        url = request.getfixturevalue("migrated_pg_url")
    else:
        url = f"sqlite:///{tmp_path / 'privacy.db'}"
        upgrade(url)
    engine = make_engine(url)
    yield make_sessionmaker(engine)
    engine.dispose()


def add(sessions: sessionmaker[Session], *rows: Any) -> None:
    with sessions.begin() as session:
        session.add_all(rows)


def app(app_id: str) -> App:
    return App(app_id=app_id, name=app_id, platform="android", created_at_ms=NOW)


def click(key: str, at_ms: int = NOW, app_id: str = "app_a", **fields: Any) -> Click:
    return Click(app_id=app_id, click_key=key, clicked_at_ms=at_ms, sandbox=False, **fields)


def install(device_id: str, at_ms: int = NOW, sandbox: bool = False, **fields: Any) -> Install:
    return Install(app_id="app_a", device_id=device_id, sandbox=sandbox, event_id=f"install-{device_id}",
                   installed_at_ms=at_ms, attributed=bool(fields), **fields)


def audit(audit_id: str, at_ms: int = NOW, event_id: str = "e", **fields: Any) -> AuditEntry:
    return AuditEntry(audit_id=audit_id, app_id="app_a", event_id=event_id, network="tiktok", status="delivered",
                      attempts=1, recorded_at_ms=at_ms, **fields)


def postback(transaction_id: str, at_ms: int = NOW, app_id: str = "app_a", ip: str | None = None) -> SkanPostback:
    body = {"transaction-id": transaction_id, **({"ip": ip} if ip else {})}
    raw = orjson.dumps(body).decode()  # as the gateway received it
    return SkanPostback(transaction_id=transaction_id, sequence_index=0, app_id=app_id, signature="skipped",
                        did_win=True, counted_as_install=False, value_source="network", sources="network",
                        postback=body, raw_body=raw, records=[], duplicates=0, received_at_ms=at_ms)


def count(sessions: sessionmaker[Session], model: Any) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_prune_deletes_expired_rows_oldest_first_in_batches_and_keeps_the_rest(
        sessions: sessionmaker[Session]) -> None:
    old = NOW - 400 * DAY_MS  # past every default window
    add(sessions, app("app_a"),
        *(click(f"old-{i}", old + i) for i in range(5)), click("recent"), click("89-days", NOW - 89 * DAY_MS),
        install("old-1", old), install("old-1", old, sandbox=True), install("old-2", old), install("recent"),
        *(audit(f"old-{i}", old) for i in range(3)), audit("recent"),
        *(postback(f"old-{i}", old) for i in range(3)), postback("recent"),
        *(Delivery(event_id=f"old-{i}", network="meta", app_id="app_a", attempts=1, delivered_at_ms=old)
          for i in range(3)),
        Delivery(event_id="recent", network="meta", app_id="app_a", attempts=1, delivered_at_ms=NOW),
        *(AuditEvent(app_id="app_a", event_id=f"old-{i}", first_ms=old) for i in range(2)),
        AuditEvent(app_id="app_a", event_id="recent", first_ms=NOW))
    table_windows = windows(Settings())
    expired = {"clicks": 5, "installs": 3, "audit_log": 3, "audit_events": 2, "skan_postbacks": 3, "deliveries": 3}
    assert count_expired(sessions, table_windows) == expired
    batches: list[tuple[str, int]] = []
    assert prune(sessions, table_windows, batch_rows=2, progress=lambda t, n: batches.append((t, n))) == expired
    assert [n for t, n in batches if t == "clicks"] == [2, 2, 1]
    assert [n for t, n in batches if t == "installs"] == [2, 1]
    with sessions() as session:
        assert sorted(session.scalars(select(Click.click_key))) == ["89-days", "recent"]
        assert list(session.scalars(select(Install.device_id))) == ["recent"]
        assert list(session.scalars(select(AuditEntry.audit_id))) == ["recent"]
        assert list(session.scalars(select(SkanPostback.transaction_id))) == ["recent"]
        assert list(session.scalars(select(Delivery.event_id))) == ["recent"]
        assert list(session.scalars(select(AuditEvent.event_id))) == ["recent"]
    assert count_expired(sessions, table_windows) == dict.fromkeys(expired, 0)


def seed_a_person(sessions: sessionmaker[Session]) -> None:
    """Device dev-jane-0001 (live and test installs, a gaid, her external id), and a bystander."""
    jane, bystander = "dev-jane-0001", "dev-other-0001"
    add(sessions, app("app_a"), app("app_b"),
        install(jane, click_key="ck-jane", click_id="IwAR-jane", network="meta"), install(jane, sandbox=True),
        install(bystander, click_key="ck-other", click_id="IwAR-other"),
        DeviceIdentity(app_id="app_a", kind="gaid", value="gaid-jane", device_id=jane, seen_at_ms=NOW),
        DeviceIdentity(app_id="app_a", kind="external_id", value=HASHES["external_id"], device_id=jane,
                       seen_at_ms=NOW),
        DeviceIdentity(app_id="app_a", kind="gaid", value="gaid-other", device_id=bystander, seen_at_ms=NOW),
        DeviceIdentity(app_id="app_b", kind="external_id", value=HASHES["external_id"], device_id=jane,
                       seen_at_ms=NOW),
        click("ck-jane", click_id="IwAR-jane"), click("ck-jane-again", gaid="gaid-jane"),
        click("ck-jane-repeat", click_id="IwAR-jane"), click("ck-other", click_id="IwAR-other", gaid="gaid-other"),
        click("ck-jane", app_id="app_b", click_id="IwAR-jane"),
        audit("a-install", event_id=f"install-{jane}", request_hash="f" * 64),
        audit("a-echo", event_id="buy-1", detail=f"invalid em {HASHES['em']}", request_hash="e" * 64),
        audit("a-other", event_id=f"install-{bystander}", request_hash="d" * 64, detail="ok"),
        postback("t-ip", ip="203.0.113.77"), postback("t-none"), postback("t-b", app_id="app_b", ip="198.51.100.9"))


def test_erasure_by_external_id_and_email_finds_the_device_and_keeps_no_value(
        sessions: sessionmaker[Session]) -> None:
    seed_a_person(sessions)
    identifiers = hash_identifiers(external_id=EXTERNAL_ID, email=EMAIL)
    expected = {"clicks": 3, "installs": 2, "device_identities": 2, "audit_log": 2, "skan_postbacks": 1}

    dry = erase(sessions, "app_a", identifiers, source="cli", dry_run=True)
    assert dry.counts == expected and dry.dry_run
    assert count(sessions, Click) == 5 and count(sessions, Install) == 3  # a dry run changes nothing

    done = erase(sessions, "app_a", identifiers, source="api")
    assert done.counts == expected and done.kinds == ("external_id", "email")
    with sessions() as session:
        assert sorted(session.scalars(select(Click.click_key).where(Click.app_id == "app_a"))) == ["ck-other"]
        assert list(session.scalars(select(Install.device_id))) == ["dev-other-0001"]
        identities = session.execute(select(DeviceIdentity.app_id, DeviceIdentity.value))
        assert sorted(tuple(row) for row in identities) == [
            ("app_a", "gaid-other"), ("app_b", HASHES["external_id"])]  # another app's data is its own
        rows = {r.audit_id: r for r in session.scalars(select(AuditEntry))}
        assert rows["a-install"].request_hash is None
        assert rows["a-echo"].request_hash is None and rows["a-echo"].detail == f"invalid em {ERASED}"
        assert rows["a-other"].request_hash == "d" * 64
        skan = {r.transaction_id: r for r in session.scalars(select(SkanPostback))}
        assert skan["t-ip"].postback["ip"] == "203.0.113.0" and "203.0.113.77" not in skan["t-ip"].raw_body
        assert skan["t-b"].postback["ip"] == "198.51.100.9"
        recorded = list(session.scalars(select(ErasureRequest).order_by(ErasureRequest.id)))
    assert [(r.dry_run, r.source, r.identifiers, r.counts) for r in recorded] == [
        (True, "cli", "external_id,email", expected), (False, "api", "external_id,email", expected)]
    stored = repr([{c.name: getattr(r, c.name) for c in ErasureRequest.__table__.columns} for r in recorded])
    for value in (EMAIL, EXTERNAL_ID, *HASHES.values(), "dev-jane-0001"):
        assert value not in stored

    again = erase(sessions, "app_a", identifiers, source="api")
    assert again.counts == dict.fromkeys(expected, 0)  # nothing left to find


def test_erased_installs_of_days_already_over_mark_them_for_the_reports_roller(
        sessions: sessionmaker[Session]) -> None:
    three_days_ago = NOW - 3 * DAY_MS
    add(sessions, app("app_a"), install("dev-old", three_days_ago), install("dev-old", three_days_ago, sandbox=True),
        install("dev-today"))

    def marks() -> list[tuple[str, int, str]]:
        with sessions() as session:
            return [tuple(r) for r in session.execute(
                select(ReportStaleDay.app_id, ReportStaleDay.day, ReportStaleDay.source))]

    erase(sessions, "app_a", hash_identifiers(device_id="dev-old"), source="cli", dry_run=True)
    assert marks() == []  # a dry run changes nothing
    erase(sessions, "app_a", hash_identifiers(device_id="dev-old"), source="cli")
    assert marks() == [("app_a", three_days_ago // DAY_MS, "installs")]  # the live one's day (sandbox: not counted)
    erase(sessions, "app_a", hash_identifiers(device_id="dev-today"), source="cli")
    assert marks() == [("app_a", three_days_ago // DAY_MS, "installs")]  # today is not rolled up yet
