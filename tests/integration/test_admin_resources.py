"""The admin service's resources against PostgreSQL, the service run as a process (`apprefer run admin`): the audit
log in keyset pages (every row once, filters by time and status, bad parameters 400 naming them), PATCH and DELETE
of an integration (seen by the forwarders' cache), and a SKAN schema in force against the history of them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy.orm import Session, sessionmaker

from shared.db.migrate import upgrade
from shared.db.models import AuditEntry
from shared.db.session import make_engine, make_sessionmaker
from shared.forwarding.audit import STATUSES
from shared.forwarding.integrations import IntegrationCache
from tests.support.pipeline import SECRET_KEY, AdminApi, service_env, start_admin
from tests.support.postgres import create_database

pytestmark = pytest.mark.timeout(120)

ROWS = 240
BASE_MS = 1_714_564_800_000  # 2024-05-01T12:00:00Z
META = {"settings": {"dataset_id": "ds-1"}, "credentials": {"access_token": "t"}}
TIKTOK = {"settings": {"tiktok_app_id": "7000000001", "store_app_id": "com.example"},
          "credentials": {"access_token": "t"}}


@dataclass
class Env:
    admin: AdminApi
    sessions: sessionmaker[Session]
    app_ids: tuple[str, str]  # of the audit rows


@pytest.fixture(scope="module")
def env(postgres_server_url: str, module_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    database_url = create_database(postgres_server_url, f"admin_resources_{uuid.uuid4().hex}")
    upgrade(database_url)
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    apps = (f"app_{uuid.uuid4().hex[:10]}", f"app_{uuid.uuid4().hex[:10]}")
    with sessions.begin() as session:  # in id order, one second apart: row i is ev-i
        session.add_all(AuditEntry(
            audit_id=f"audit-{i}", app_id=apps[i % 2], event_id=f"ev-{i}", event_name="purchase",
            network=("meta", "tiktok", "google_ads")[i % 3], status=STATUSES[i % len(STATUSES)], attempts=1,
            http_status=200 if STATUSES[i % len(STATUSES)] == "delivered" else 400, error_code=None,
            detail=None if i % len(STATUSES) == 0 else f"detail {i}", latency_ms=10, request_hash=None,
            recorded_at_ms=BASE_MS + i * 1000) for i in range(ROWS))
    admin_service, admin_base = start_admin(service_env(module_bootstrap, database_url),
                                            tmp_path_factory.mktemp("admin-resources"))
    try:
        yield Env(AdminApi(admin_base), sessions, apps)
    finally:
        admin_service.terminate()
        engine.dispose()


# --- the audit log ---------------------------------------------------------------------------------------


def audit_walk(env: Env, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """Every page, `next` followed until null: the records and how many pages."""
    records: list[dict[str, Any]] = []
    pages, cursor = 0, None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = env.admin.call("GET", f"/audit?{urlencode(query)}")
        pages += 1
        assert pages <= ROWS + 1, "paging does not end"
        records += page["records"]
        cursor = page["next"]
        if cursor is None:
            return records, pages
        assert isinstance(cursor, str)


def numbers(records: list[dict[str, Any]]) -> list[int]:
    return [int(r["event_id"].removeprefix("ev-")) for r in records]


def test_audit_pages_walk_every_row_exactly_once_newest_first(env: Env) -> None:
    records, pages = audit_walk(env, limit=7)
    assert numbers(records) == list(reversed(range(ROWS)))  # each once, newest (highest id) first
    assert pages == -(-ROWS // 7)
    first = env.admin.call("GET", "/audit")  # limit 100 by default
    assert len(first["records"]) == 100 and first["next"] is not None
    assert env.admin.call("GET", "/audit?limit=1000")["next"] is None  # everything in one page: no next
    assert len(env.admin.call("GET", f"/audit?limit={ROWS}")["records"]) == ROWS
    assert env.admin.call("GET", f"/audit?limit={ROWS}")["next"] is None
    # The record's fields, as before paging.
    [one] = env.admin.call("GET", "/audit?event_id=ev-13")["records"]
    assert one == {"app_id": env.app_ids[1], "event_id": "ev-13", "event_name": "purchase", "network": "tiktok",
                   "status": STATUSES[13 % len(STATUSES)], "attempts": 1, "last_error": "detail 13",
                   "detail": "detail 13", "http_status": 400, "error_code": None, "latency_ms": 10,
                   "request_hash": None, "recorded_at_ms": BASE_MS + 13_000}


def test_audit_filters_by_time_status_app_and_network_across_pages(env: Env) -> None:
    rejected = [i for i in reversed(range(ROWS)) if STATUSES[i % len(STATUSES)] == "rejected"]
    assert numbers(audit_walk(env, status="rejected", limit=4)[0]) == rejected

    # since and until are inclusive epoch ms (or what `apprefer dlq --since` takes: RFC 3339 here).
    window = list(reversed(range(50, 81)))
    assert numbers(audit_walk(env, since=BASE_MS + 50_000, until=BASE_MS + 80_000, limit=6)[0]) == window
    assert numbers(audit_walk(env, since="2024-05-01T12:00:50Z", until="2024-05-01T12:01:20Z")[0]) == window
    assert numbers(audit_walk(env, since=BASE_MS + (ROWS - 3) * 1000)[0]) == [ROWS - 1, ROWS - 2, ROWS - 3]

    both = [i for i in window if STATUSES[i % len(STATUSES)] == "delivered"]
    assert numbers(audit_walk(env, status="delivered", since=BASE_MS + 50_000, until=BASE_MS + 80_000,
                              limit=1)[0]) == both
    app = env.app_ids[0]
    mine = [i for i in reversed(range(ROWS)) if i % 2 == 0 and i % 3 == 1]
    assert numbers(audit_walk(env, app_id=app, network="tiktok", limit=9)[0]) == mine
    assert env.admin.call("GET", "/audit?app_id=app_nobody") == {"records": [], "next": None}


@pytest.mark.parametrize(("query", "field"), [
    ("limit=x", "limit"), ("limit=", "limit"), ("since=yesterdy", "since"), ("until=2024-13-01", "until"),
    ("status=lost", "status"), ("cursor=abc", "cursor"), ("cursor=0", "cursor"), ("cursor=-5", "cursor"),
    ("cursor=99999999999999999999", "cursor"), ("since=1714564900000&until=1714564800000", "since"),
    ("app_id=%00", "app_id"), ("event_id=a%00b", "event_id"),
])
def test_bad_audit_parameters_are_400_naming_them(env: Env, query: str, field: str) -> None:
    answer = env.admin.call("GET", f"/audit?{query}", expect=400)
    assert (answer["error"], answer["field"]) == ("invalid_request", field), answer


# --- integrations: PATCH and DELETE ----------------------------------------------------------------------


def test_patch_changes_only_enabled_and_the_event_map(env: Env) -> None:
    app_id = env.admin.new_app()["app_id"]
    path = f"/apps/{app_id}/integrations/meta"
    stored = env.admin.call("PUT", path, META)
    patched = env.admin.call("PATCH", path, {"enabled": False})
    assert patched["enabled"] is False and patched["settings"] == {"dataset_id": "ds-1"}
    assert patched["credentials_set"] is True and patched["updated_at_ms"] > stored["updated_at_ms"]
    patched = env.admin.call("PATCH", path, {"event_map": {"purchase": "Purchase"}, "enabled": True})
    assert (patched["enabled"], patched["event_map"]) == (True, {"purchase": "Purchase"})
    assert env.admin.call("GET", path) == patched

    for body, field in (({"settings": {"dataset_id": "x"}}, "settings"), ({"credentials": {}}, "credentials"),
                        ({"enabled": "no"}, "enabled"), ({"enabled": None}, "enabled"),
                        ({"event_map": ["purchase"]}, "event_map"), ({}, "body"),
                        ({"enabled": True, "network": "tiktok"}, "network")):
        answer = env.admin.call("PATCH", path, body, expect=400)
        assert answer["field"] == field, (body, answer)
    assert env.admin.call("GET", path) == patched  # nothing changed by a refused patch

    assert env.admin.call("PATCH", f"/apps/{app_id}/integrations/tiktok", {"enabled": False}, expect=404)
    assert env.admin.call("PATCH", f"/apps/{app_id}/integrations/myspace", {"enabled": False}, expect=404)
    assert env.admin.call("PATCH", "/apps/app_nobody/integrations/meta", {"enabled": False}, expect=404)


def test_delete_removes_it_and_the_forwarders_see_it_gone(env: Env) -> None:
    app_id = env.admin.new_app()["app_id"]
    env.admin.call("PUT", f"/apps/{app_id}/integrations/meta", META)  # the older one
    env.admin.call("PUT", f"/apps/{app_id}/integrations/tiktok", TIKTOK)
    cache = IntegrationCache(SECRET_KEY)
    with env.sessions() as session:
        assert set(cache.for_app(session, app_id)) == {"meta", "tiktok"}

    answer = env.admin.call("DELETE", f"/apps/{app_id}/integrations/meta")
    assert answer == {"app_id": app_id, "network": "meta", "deleted": True}
    env.admin.call("GET", f"/apps/{app_id}/integrations/meta", expect=404)
    listed = env.admin.call("GET", f"/apps/{app_id}/integrations")["integrations"]
    assert [i["network"] for i in listed] == ["tiktok"]
    with env.sessions() as session:  # the cache is checked against max(updated_at_ms): it must have moved
        assert set(cache.for_app(session, app_id)) == {"tiktok"}

    assert env.admin.call("DELETE", f"/apps/{app_id}/integrations/meta", expect=404)["error"] == "not_found"
    env.admin.call("DELETE", f"/apps/{app_id}/integrations/myspace", expect=404)
    env.admin.call("DELETE", f"/apps/{app_id}/integrations/tiktok")
    assert env.admin.call("GET", f"/apps/{app_id}/integrations")["integrations"] == []
    env.admin.call("PUT", f"/apps/{app_id}/integrations/meta", META)  # and it can be made again


# --- SKAN conversion schemas -----------------------------------------------------------------------------


def schema(schema_id: str, valid_from: str) -> dict[str, Any]:
    return {"schema_id": schema_id, "valid_from": valid_from, "mode": "conversion", "events": ["signup", "purchase"]}


def test_the_skan_schema_in_force_and_the_history(env: Env) -> None:
    app_id = env.admin.new_app(platform="ios")["app_id"]
    path = f"/apps/{app_id}/skan"
    assert env.admin.call("GET", f"{path}/schemas") == {"schemas": []}
    assert env.admin.call("GET", f"{path}/schema", expect=404)["error"] == "not_found"

    future = schema("v3", "2999-01-01T00:00:00Z")
    env.admin.call("PUT", f"{path}/schema", future)
    assert "2999-01-01T00:00:00Z" in env.admin.call("GET", f"{path}/schema", expect=404)["message"]
    current, old = schema("v2", "2024-06-01T14:00:00.250+02:00"), schema("v1", "2020-01-01T00:00:00Z")
    env.admin.call("PUT", f"{path}/schema", current)
    env.admin.call("PUT", f"{path}/schema", old)

    in_force = env.admin.call("GET", f"{path}/schema")
    assert in_force["schema_id"] == "v2" and in_force["in_force"] is True and in_force["schema"] == current
    assert (in_force["valid_from"], in_force["valid_from_ms"]) == ("2024-06-01T12:00:00.250Z", 1_717_243_200_250)
    assert (in_force["mode"], in_force["signature_policy"], in_force["app_id"]) == ("conversion", "enforce", app_id)
    history = env.admin.call("GET", f"{path}/schemas")["schemas"]
    assert [(s["schema_id"], s["in_force"]) for s in history] == [("v3", False), ("v2", True), ("v1", False)]
    assert [s["valid_from"] for s in history] == ["2999-01-01T00:00:00Z", "2024-06-01T12:00:00.250Z",
                                                  "2020-01-01T00:00:00Z"]
    assert [s["schema"] for s in history] == [future, current, old]
    assert all(isinstance(s["updated_at_ms"], int) for s in history) and history[1] == in_force

    # A schema stored again under its id replaces it: v2 moved before v1 is no longer in force.
    env.admin.call("PUT", f"{path}/schema", schema("v2", "2019-01-01T00:00:00Z"))
    assert env.admin.call("GET", f"{path}/schema")["schema_id"] == "v1"
    assert [s["schema_id"] for s in env.admin.call("GET", f"{path}/schemas")["schemas"]] == ["v3", "v1", "v2"]

    env.admin.call("GET", "/apps/app_nobody/skan/schema", expect=404)
    env.admin.call("GET", "/apps/app_nobody/skan/schemas", expect=404)
