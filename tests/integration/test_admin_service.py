"""`apprefer run admin`, the admin API's own process: health, metrics, its OpenAPI document, the token, and
tracking links that point at the gateway (APPREFER_PUBLIC_BASE_URL), not at the admin service."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from shared.db.migrate import upgrade
from shared.kafka.topics import create_topics
from tests.support.pipeline import Edge, http_call, service_env, start_edge
from tests.support.postgres import create_database


@pytest.fixture(scope="module")
def edge(postgres_server_url: str, module_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    database_url = create_database(postgres_server_url, f"admin_{uuid.uuid4().hex}")
    upgrade(database_url)
    create_topics(module_bootstrap, partitions=1, replication=1)
    running = start_edge(service_env(module_bootstrap, database_url), tmp_path_factory.mktemp("admin-service"))
    try:
        yield running
    finally:
        running.terminate()


def test_health_metrics_and_its_own_openapi_document(edge: Edge) -> None:
    for path, answer in (("/healthz", {"status": "ok"}), ("/readyz", {"status": "ready"})):
        status, _, body = http_call("GET", f"{edge.admin_base}{path}")
        assert (status, body) == (200, answer), path
    edge.admin.call("GET", "/apps")  # counted below
    status, headers, metrics = http_call("GET", f"{edge.admin_base}/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert b'apprefer_http_requests_total{route="/admin/v1/apps",status="200"}' in metrics
    status, _, document = http_call("GET", f"{edge.admin_base}/openapi.json")
    assert status == 200 and document["openapi"].startswith("3.")
    paths = set(document["paths"])
    assert {"/admin/v1/apps", "/admin/v1/apps/{app_id}/links", "/admin/v1/audit", "/admin/v1/dlq",
            "/healthz", "/readyz", "/metrics", "/openapi.json"} <= paths
    assert not {"/v1/events", "/v1/clicks", "/c/{link_id}"} & paths  # ingest is the gateway's


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "test-admin-token", "Basic dGVzdA=="])
def test_the_admin_api_wants_the_token(edge: Edge, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in (("GET", "/admin/v1/apps"), ("POST", "/admin/v1/apps"), ("GET", "/admin/v1/networks")):
        status, _, answer = http_call(method, f"{edge.admin_base}{path}", None, headers)
        assert (status, answer["error"]) == (401, "unauthorized"), (method, path, answer)


def test_a_tracking_link_points_at_the_gateway(edge: Edge) -> None:
    app = edge.admin.new_app()
    link = edge.admin.call("POST", f"/apps/{app['app_id']}/links", {"network": "meta", "campaign": "c1"},
                           expect=201)
    assert link["url"] == f"{edge.base}/c/{link['link_id']}"
    assert edge.base != edge.admin_base
    status, headers, _ = http_call("GET", link["url"] + "?fbclid=IwAR-admin-service")
    assert status == 302 and headers["location"].startswith("https://play.google.com/store/apps/details")
    assert http_call("GET", f"{edge.admin_base}/c/{link['link_id']}")[0] == 404  # not served here
