"""The admin API's apps, keys and links (issue 16): paged listing, PATCH, soft delete (its keys refused and its
links 404 at the gateway), keys listed without their secret, rotation with a grace, revocation, App Store id
forms, and the admin events record of every mutating request.

The store logic runs on PostgreSQL and SQLite; the HTTP half against a real admin service and gateway (one
for the module), the gateway's key cache off (APPREFER_API_KEY_CACHE_SECONDS=0) so "at once" is tested as
the store answers: with the default cache a deleted app's key, a revoked or expired key may still be taken for
up to 30 seconds by a gateway that saw it just before."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from services.admin.guard import admin_action
from services.admin.store import AdminStore
from services.admin.stores.apps import Conflict
from services.gateway.store import GatewayStore
from shared.db.migrate import upgrade
from shared.db.models import ApiKey, App
from shared.db.session import make_engine, make_sessionmaker
from shared.errors import NotFound
from shared.kafka.topics import create_topics
from tests.support.pipeline import ADMIN_TOKEN, Edge, http_call, service_env, start_edge
from tests.support.postgres import create_database

pytestmark = pytest.mark.timeout(120)
BASE = "https://t.example"


def app_fields(**extra: Any) -> dict[str, Any]:
    return {"name": "An app", "platform": "android", "store_url": "https://play.google.com/store/apps/details?id=x",
            **extra}


def apple_id() -> str:
    return str(random.randrange(10**8, 10**10))


# --- the store, on both databases ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_url(postgres_server_url: str) -> str:
    url = create_database(postgres_server_url, f"admin_apps_{uuid.uuid4().hex}")
    upgrade(url)
    return url


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('admin-apps') / 'apprefer.db'}"
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def sessions(request: pytest.FixtureRequest) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def store(sessions: sessionmaker[Session]) -> AdminStore:
    return AdminStore(sessions, None)


@pytest.fixture
def gateway(sessions: sessionmaker[Session]) -> GatewayStore:
    return GatewayStore(sessions, None)


def walk(store: AdminStore, limit: int) -> list[str]:
    seen: list[str] = []
    after = None
    for _ in range(10_000):
        page, after = store.list_apps(limit, after)
        assert len(page) <= limit and (after is None or len(page) == limit)
        seen += [a["app_id"] for a in page]
        if after is None:
            return seen
    raise AssertionError("the walk does not end")


def test_paging_walks_every_app_exactly_once(store: AdminStore, sessions: sessionmaker[Session]) -> None:
    made = [store.create_app(app_fields(name=f"app {i}"))["app_id"] for i in range(11)]
    tie = store.get_app(made[2])["created_at_ms"]
    with sessions.begin() as session:  # the same creation time for several: app_id breaks the tie
        session.execute(update(App).where(App.app_id.in_(made[2:8])).values(created_at_ms=tie))
    store.delete_app(made[5])
    with sessions() as session:
        live = set(session.scalars(select(App.app_id).where(App.deleted_at_ms.is_(None))))
    for limit in (1, 3, 4, 1000):
        seen = walk(store, limit)
        assert len(seen) == len(set(seen)) and set(seen) == live, limit
        assert set(made) - {made[5]} <= set(seen) and made[5] not in seen


def test_patch_changes_only_the_fields_given(store: AdminStore) -> None:
    app = store.create_app(app_fields(bundle_id="com.x", apple_app_id=apple_id(), lookback_days=9))
    patched = store.patch_app(app["app_id"], {"name": "Renamed", "store_url": None})
    assert patched == {**app, "name": "Renamed", "store_url": None}
    assert store.get_app(app["app_id"]) == patched
    other = store.create_app(app_fields(apple_app_id=apple_id()))
    with pytest.raises(Conflict) as conflict:
        store.patch_app(other["app_id"], {"apple_app_id": app["apple_app_id"]})
    assert conflict.value.field == "apple_app_id"
    with pytest.raises(Conflict):
        store.create_app(app_fields(apple_app_id=app["apple_app_id"]))
    kept = app["apple_app_id"]
    assert store.patch_app(app["app_id"], {"apple_app_id": kept})["apple_app_id"] == kept  # its own: no conflict
    store.delete_app(app["app_id"])  # a deleted app's App Store id is free again
    assert store.patch_app(other["app_id"], {"apple_app_id": kept})["apple_app_id"] == kept
    for gone in (lambda: store.patch_app(app["app_id"], {"name": "x"}), lambda: store.delete_app(app["app_id"]),
                 lambda: store.get_app(app["app_id"]), lambda: store.patch_app("app_nope", {"name": "x"})):
        with pytest.raises(NotFound):
            gone()


def test_rotation_keeps_the_old_key_for_its_grace_only(store: AdminStore, gateway: GatewayStore,
                                                       sessions: sessionmaker[Session]) -> None:
    app_id = store.create_app(app_fields())["app_id"]
    nothing = store.rotate_key(app_id, "live", 24)  # no live key yet: it replaces none
    assert (nothing["replaces"], nothing["old_valid_until_ms"]) == ([], None)
    test_key = store.create_key(app_id, "test")
    before = int(time.time() * 1000)
    rotated = store.rotate_key(app_id, "live", 24)
    assert rotated["replaces"] == [nothing["key_id"]] and rotated["key_id"] != nothing["key_id"]
    assert before + 24 * 3_600_000 <= rotated["old_valid_until_ms"] <= int(time.time() * 1000) + 24 * 3_600_000
    for key in (nothing["key"], rotated["key"], test_key["key"]):  # in the grace, both; the test key untouched
        owner = gateway.key_owner(key)
        assert owner is not None and owner.app_id == app_id
    keys = {k["key_id"]: k for k in store.list_keys(app_id)}
    assert keys[nothing["key_id"]]["expires_at_ms"] == rotated["old_valid_until_ms"]
    assert keys[rotated["key_id"]]["expires_at_ms"] is None and keys[test_key["key_id"]]["expires_at_ms"] is None
    # A second rotation within the grace keeps the first old key's earlier end, and ends the second one's.
    again = store.rotate_key(app_id, "live", 48)
    assert again["replaces"] == [nothing["key_id"], rotated["key_id"]]
    assert {k["key_id"]: k for k in store.list_keys(app_id)}[nothing["key_id"]]["expires_at_ms"] == (
        rotated["old_valid_until_ms"])
    with sessions.begin() as session:  # the grace is over
        session.execute(update(ApiKey).where(ApiKey.id == int(nothing["key_id"].removeprefix("key_")))
                        .values(expires_at_ms=int(time.time() * 1000) - 1))
    assert gateway.key_owner(nothing["key"]) is None and gateway.key_owner(rotated["key"]) is not None
    none_left = store.rotate_key(app_id, "live", 0)  # no grace: the old ones stop at once
    assert none_left["replaces"] == [rotated["key_id"], again["key_id"]]
    assert gateway.key_owner(rotated["key"]) is None and gateway.key_owner(again["key"]) is None
    assert gateway.key_owner(none_left["key"]) is not None


def test_revocation_is_at_once_and_idempotent(store: AdminStore, gateway: GatewayStore) -> None:
    app_id = store.create_app(app_fields())["app_id"]
    other_app = store.create_app(app_fields())["app_id"]
    created = store.create_key(app_id, "live")
    assert gateway.key_owner(created["key"]) is not None
    revoked = store.revoke_key(app_id, created["key_id"])
    assert revoked["revoked_at_ms"] is not None and gateway.key_owner(created["key"]) is None
    assert store.revoke_key(app_id, created["key_id"]) == revoked  # twice: the first revocation time stays
    for app, key_id in ((other_app, created["key_id"]), (app_id, "key_999999999"), (app_id, "key_01"),
                        (app_id, "7"), (app_id, "key_" + "9" * 30)):
        with pytest.raises(NotFound):
            store.revoke_key(app, key_id)


def test_a_deleted_app_and_link_are_gone(store: AdminStore, gateway: GatewayStore) -> None:
    app_id = store.create_app(app_fields())["app_id"]
    key = store.create_key(app_id, "live")["key"]
    kept = store.create_link(app_id, {"network": "meta", "campaign": "a", "store_url": None}, BASE)
    dropped = store.create_link(app_id, {"network": "meta", "campaign": "b", "store_url": None}, BASE)
    assert kept["url"] == f"{BASE}/c/{kept['link_id']}"
    assert store.get_link(app_id, kept["link_id"], BASE) == kept
    deleted_link = store.delete_link(app_id, dropped["link_id"], BASE)
    assert deleted_link["deleted_at_ms"] is not None
    assert gateway.link_target(dropped["link_id"]) is None and gateway.link_target(kept["link_id"]) is not None
    assert store.list_links(app_id, BASE, 100) == ([kept], None)
    for gone in (lambda: store.get_link(app_id, dropped["link_id"], BASE),
                 lambda: store.delete_link(app_id, dropped["link_id"], BASE),
                 lambda: store.get_link(store.create_app(app_fields())["app_id"], kept["link_id"], BASE)):
        with pytest.raises(NotFound):
            gone()
    store.delete_app(app_id)
    assert gateway.key_owner(key) is None and gateway.link_target(kept["link_id"]) is None
    for later in (lambda: store.list_keys(app_id), lambda: store.create_key(app_id, "live"),
                  lambda: store.rotate_key(app_id, "live", 1), lambda: store.list_links(app_id, BASE, 10),
                  lambda: store.create_link(app_id, {"network": None, "campaign": None, "store_url": None}, BASE)):
        with pytest.raises(NotFound):
            later()


def test_admin_events_newest_first_by_app(store: AdminStore) -> None:
    app_id = store.create_app(app_fields())["app_id"]
    for index in range(5):
        store.record_admin_event(token_id="abc123abc123", action=f"thing.{index}", method="POST",
                                 path=f"/admin/v1/apps/{app_id}/x", app_id=app_id, status=200 + index)
    store.record_admin_event(token_id="abc123abc123", action="other.create", method="POST", path="/admin/v1/x",
                             app_id=None, status=201)
    first, before = store.admin_events(app_id, 2)
    second, before = store.admin_events(app_id, 2, before)
    third, before = store.admin_events(app_id, 2, before)
    assert before is None
    assert [e["action"] for e in first + second + third] == [f"thing.{i}" for i in (4, 3, 2, 1, 0)]
    assert store.admin_events(None, 1)[0][0]["action"] == "other.create"


@pytest.mark.parametrize(("method", "route", "action"), [
    ("POST", "/admin/v1/apps", "app.create"), ("PATCH", "/admin/v1/apps/{app_id}", "app.patch"),
    ("DELETE", "/admin/v1/apps/{app_id}", "app.delete"), ("POST", "/admin/v1/apps/{app_id}/keys", "key.create"),
    ("POST", "/admin/v1/apps/{app_id}/keys/rotate", "key.rotate"),
    ("DELETE", "/admin/v1/apps/{app_id}/keys/{key_id}", "key.delete"),
    ("DELETE", "/admin/v1/apps/{app_id}/links/{link_id}", "link.delete"),
    ("PUT", "/admin/v1/apps/{app_id}/integrations/{network}", "integration.put"),
    ("POST", "/admin/v1/apps/{app_id}/integrations/{network}/test", "integration.test"),
    ("PUT", "/admin/v1/apps/{app_id}/skan/schema", "skan_schema.put"),
    ("POST", "/admin/v1/apps/{app_id}/erasure", "app.erasure"),
])
def test_actions_are_derived_from_the_routes(method: str, route: str, action: str) -> None:
    assert admin_action(route, method) == action


# --- over HTTP: the admin service and the gateway ------------------------------------------------------------


@pytest.fixture(scope="module")
def edge(pg_url: str, module_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    create_topics(module_bootstrap, partitions=1, replication=1)
    env = service_env(module_bootstrap, pg_url, APPREFER_API_KEY_CACHE_SECONDS="0")
    running = start_edge(env, Path(tmp_path_factory.mktemp("admin-apps-edge")))
    try:
        yield running
    finally:
        running.terminate()


@pytest.fixture(scope="module")
def pg_sessions(pg_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(pg_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def send_event(edge: Edge, key: str) -> int:
    event = {"event_id": uuid.uuid4().hex, "event_name": "install", "event_time": int(time.time()),
             "device": {"device_id": f"dev-{uuid.uuid4().hex[:8]}", "os": "android"}}
    return http_call("POST", f"{edge.base}/v1/events", event, {"Authorization": f"Bearer {key}"})[0]


def refused(edge: Edge, method: str, path: str, body: Any, status: int = 400) -> dict[str, Any]:
    answer: dict[str, Any] = edge.admin.call(method, path, body, expect=status)
    return answer


def test_http_paging_and_bad_page_queries(edge: Edge) -> None:
    made = {edge.admin.call("POST", "/apps", app_fields(name=f"paged {i}"), expect=201)["app_id"] for i in range(5)}
    seen: list[str] = []
    query = "?limit=2"
    while True:
        page = edge.admin.call("GET", f"/apps{query}")
        assert len(page["apps"]) <= 2
        seen += [a["app_id"] for a in page["apps"]]
        if page["next"] is None:
            break
        assert isinstance(page["next"], str)
        query = f"?limit=2&cursor={page['next']}"
    assert len(seen) == len(set(seen)) and made <= set(seen)
    assert {a["app_id"] for a in edge.admin.call("GET", "/apps?limit=1000")["apps"]} == set(seen)
    wrong_shape = base64.urlsafe_b64encode(json.dumps(["x", 1]).encode()).decode().rstrip("=")
    for query, field in (("cursor=!!!", "cursor"), (f"cursor={wrong_shape}", "cursor"), ("cursor=e30", "cursor"),
                         ("limit=0", "limit"), ("limit=1001", "limit"), ("limit=ten", "limit"), ("limit=-1", "limit")):
        assert refused(edge, "GET", f"/apps?{query}", None)["field"] == field, query


def test_http_patch_and_the_app_store_id_forms(edge: Edge) -> None:
    given: list[Any] = [int(apple_id()), apple_id(), "id" + apple_id()]
    made = [edge.admin.call("POST", "/apps", app_fields(platform="ios", apple_app_id=g), expect=201) for g in given]
    assert [m["apple_app_id"] for m in made] == [str(given[0]), given[1], given[2][2:]]
    for bad in ("id-1", "0123", 1.5, True, "abc"):
        assert refused(edge, "POST", "/apps", app_fields(apple_app_id=bad))["field"] == "apple_app_id", bad
    app = made[0]
    path = f"/apps/{app['app_id']}"
    new_id = apple_id()
    patched = edge.admin.call("PATCH", path, {"lookback_days": 30, "apple_app_id": "id" + new_id})
    assert patched == {**app, "lookback_days": 30, "apple_app_id": new_id}
    assert edge.admin.call("GET", path) == patched
    for body, field in (({"lookback_days": 91}, "lookback_days"), ({"name": None}, "name"), ({"name": ""}, "name"),
                        ({"platform": "android"}, "platform"), ({"max_revenue_amount": "5"}, "max_revenue_amount"),
                        ({"apple_app_id": "id"}, "apple_app_id"), ({"test_app": True}, "test_app")):
        assert refused(edge, "PATCH", path, body)["field"] == field, body
    assert edge.admin.call("GET", path) == patched  # nothing of a refused patch is kept
    taken = refused(edge, "PATCH", path, {"apple_app_id": made[2]["apple_app_id"]}, 409)
    assert (taken["error"], taken["field"]) == ("conflict", "apple_app_id")
    assert refused(edge, "PATCH", "/apps/app_unknown", {"name": "x"}, 404)["error"] == "not_found"


def test_http_delete_app_refuses_its_keys_and_links_at_once(edge: Edge) -> None:
    app = edge.admin.new_app()
    link = edge.admin.call("POST", f"/apps/{app['app_id']}/links", {"network": "meta"}, expect=201)
    assert send_event(edge, app["live_key"]) == 202
    assert http_call("GET", link["url"])[0] == 302
    deleted = edge.admin.call("DELETE", f"/apps/{app['app_id']}")
    assert deleted["app_id"] == app["app_id"] and deleted["deleted_at_ms"] > 0
    assert send_event(edge, app["live_key"]) == 401 and send_event(edge, app["test_key"]) == 401
    assert http_call("GET", link["url"])[0] == 404
    for method, path in (("GET", ""), ("DELETE", ""), ("PATCH", ""), ("GET", "/keys"), ("GET", "/links"),
                         ("GET", f"/links/{link['link_id']}")):
        refused(edge, method, f"/apps/{app['app_id']}{path}", {} if method == "PATCH" else None, 404)
    listed = edge.admin.call("GET", "/apps?limit=1000")["apps"]
    assert app["app_id"] not in {a["app_id"] for a in listed}


def test_http_keys_listed_without_secrets_rotated_and_revoked(edge: Edge, pg_sessions: sessionmaker[Session]
                                                             ) -> None:
    app = edge.admin.new_app()
    path = f"/apps/{app['app_id']}/keys"
    listing = edge.admin.call("GET", path)
    text = json.dumps(listing)
    assert app["live_key"] not in text and app["test_key"] not in text
    assert hashlib.sha256(app["live_key"].encode()).hexdigest() not in text
    assert [(k["mode"], set(k)) for k in listing["keys"]] == [
        (mode, {"key_id", "app_id", "mode", "prefix", "created_at_ms", "revoked_at_ms", "expires_at_ms"})
        for mode in ("live", "test")]
    live_id = listing["keys"][0]["key_id"]
    assert live_id.startswith("key_") and app["live_key"].startswith(listing["keys"][0]["prefix"])

    rotated = edge.admin.call("POST", f"{path}/rotate", {"mode": "live"}, expect=201)
    assert rotated["replaces"] == [live_id] and rotated["old_valid_until_ms"] > time.time() * 1000 + 23 * 3_600_000
    assert send_event(edge, app["live_key"]) == 202 and send_event(edge, rotated["key"]) == 202  # the grace
    with pg_sessions.begin() as session:  # ... is over
        session.execute(update(ApiKey).where(ApiKey.id == int(live_id.removeprefix("key_")))
                        .values(expires_at_ms=int(time.time() * 1000) - 1))
    assert send_event(edge, app["live_key"]) == 401 and send_event(edge, rotated["key"]) == 202

    revoked = edge.admin.call("DELETE", f"{path}/{rotated['key_id']}")
    assert revoked["revoked_at_ms"] is not None and "key" not in revoked
    assert send_event(edge, rotated["key"]) == 401 and send_event(edge, app["test_key"]) == 202
    assert edge.admin.call("DELETE", f"{path}/{rotated['key_id']}") == revoked  # idempotent
    for key_id in ("key_999999999", "nope"):
        refused(edge, "DELETE", f"{path}/{key_id}", None, 404)
    no_live = edge.admin.call("POST", f"{path}/rotate", {"mode": "live", "grace_hours": 0}, expect=201)
    assert (no_live["replaces"], no_live["old_valid_until_ms"]) == ([], None)
    for body, field in (({"mode": "live", "grace_hours": 721}, "grace_hours"),
                        ({"mode": "live", "grace_hours": -1}, "grace_hours"), ({"mode": "prod"}, "mode")):
        assert refused(edge, "POST", f"{path}/rotate", body)["field"] == field
    created = edge.admin.call("POST", path, {"mode": "test"}, expect=201)
    assert created["key_id"].startswith("key_") and created["key"].startswith("pk_test_")


def test_http_links_listed_got_and_deleted(edge: Edge) -> None:
    app = edge.admin.new_app()
    path = f"/apps/{app['app_id']}/links"
    made = [edge.admin.call("POST", path, {"network": "meta", "campaign": f"c{i}"}, expect=201) for i in range(3)]
    made.sort(key=lambda link: (link["created_at_ms"], link["link_id"]))  # the listing's order
    first = edge.admin.call("GET", f"{path}?limit=2")
    rest = edge.admin.call("GET", f"{path}?limit=2&cursor={first['next']}")
    assert first["links"] + rest["links"] == made and rest["next"] is None
    assert made[0]["url"] == f"{edge.base}/c/{made[0]['link_id']}"
    assert edge.admin.call("GET", f"{path}/{made[1]['link_id']}") == made[1]
    edge.admin.call("DELETE", f"{path}/{made[1]['link_id']}")
    assert http_call("GET", made[1]["url"])[0] == 404 and http_call("GET", made[0]["url"])[0] == 302
    refused(edge, "GET", f"{path}/{made[1]['link_id']}", None, 404)
    refused(edge, "DELETE", f"{path}/{made[1]['link_id']}", None, 404)
    assert edge.admin.call("GET", path)["links"] == [made[0], made[2]]


def test_http_admin_events_record_mutations_without_bodies(edge: Edge) -> None:
    secret_name = f"name-{uuid.uuid4().hex}"
    app = edge.admin.call("POST", "/apps", app_fields(name=secret_name), expect=201)
    app_path = f"/apps/{app['app_id']}"
    edge.admin.call("GET", app_path)  # not recorded
    edge.admin.call("PATCH", f"{app_path}?note=dropped", {"bundle_id": f"bundle-{secret_name}"})
    refused(edge, "PATCH", app_path, {"lookback_days": 0})
    edge.admin.call("POST", f"{app_path}/keys/rotate", {"mode": "test"}, expect=201)
    link = edge.admin.call("POST", f"{app_path}/links", {"campaign": secret_name}, expect=201)
    edge.admin.call("DELETE", f"{app_path}/links/{link['link_id']}")
    unauthorized = http_call("DELETE", f"{edge.admin_base}/admin/v1{app_path}", None, {"Authorization": "Bearer no"})
    assert unauthorized[0] == 401  # not recorded either: nothing was done

    listed = edge.admin.call("GET", f"/admin-events?app_id={app['app_id']}")
    events = listed["admin_events"]
    assert listed["next"] is None
    assert [(e["action"], e["method"], e["status"]) for e in events] == [
        ("link.delete", "DELETE", 200), ("link.create", "POST", 201), ("key.rotate", "POST", 201),
        ("app.patch", "PATCH", 400), ("app.patch", "PATCH", 200), ("app.create", "POST", 201)]
    token = hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest()[:12]
    assert {(e["token_id"], e["app_id"]) for e in events} == {(token, app["app_id"])}
    assert [e["path"] for e in events] == [
        f"/admin/v1{app_path}/links/{link['link_id']}", f"/admin/v1{app_path}/links",
        f"/admin/v1{app_path}/keys/rotate", f"/admin/v1{app_path}", f"/admin/v1{app_path}", "/admin/v1/apps"]
    assert secret_name not in json.dumps(listed) and ADMIN_TOKEN not in json.dumps(listed)
    assert events == sorted(events, key=lambda e: -e["at_ms"])

    pages: list[dict[str, Any]] = []
    query = f"app_id={app['app_id']}&limit=4"
    while True:
        page = edge.admin.call("GET", f"/admin-events?{query}")
        pages += page["admin_events"]
        if page["next"] is None:
            break
        query = f"app_id={app['app_id']}&limit=4&cursor={page['next']}"
    assert pages == events
    newest = edge.admin.call("GET", "/admin-events?limit=1")["admin_events"]
    assert newest == events[:1]
    assert refused(edge, "GET", "/admin-events?cursor=abc", None)["field"] == "cursor"
