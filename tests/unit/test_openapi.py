"""The OpenAPI documents are made from the routes and their models (shared/openapi.py): every route is in its
service's document, a route without an Operation stops the build, and query parameters are plain (no null)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from pydantic import BaseModel

from services.admin import openapi as admin_docs
from services.admin.app import build_app as build_admin_app
from services.admin.app import documents
from services.gateway import openapi as gateway_docs
from services.gateway.app import Gateway
from services.gateway.app import build_app as build_gateway_app
from shared.openapi import Answer, Operation, UndocumentedRoute, build_document, documented


def routes_of(app: web.Application, keep: Any = lambda path: True) -> set[str]:
    return {f"{route.method} {route.resource.canonical}" for route in app.router.routes()
            if route.method != "HEAD" and route.resource is not None and keep(route.resource.canonical)}


def operations_of(document: dict[str, Any]) -> set[str]:
    return {f"{method.upper()} {path}" for path, item in document["paths"].items() for method in item}


def gateway_document() -> tuple[web.Application, dict[str, Any]]:
    app = build_gateway_app(Gateway.__new__(Gateway), max_body_bytes=1000)
    return app, build_document(app.router.routes(), gateway_docs.SPEC)


def admin_document() -> tuple[web.Application, dict[str, Any]]:
    app = build_admin_app(None, admin_token="t", public_base_url="http://127.0.0.1", max_body_bytes=1000)  # type: ignore[arg-type]
    return app, build_document(app.router.routes(), admin_docs.SPEC, documents)


@pytest.mark.parametrize("made", [gateway_document, admin_document])
def test_every_route_is_in_its_document(made: Any) -> None:
    app, document = made()
    keep = documents if made is admin_document else (lambda path: True)
    assert operations_of(document) == routes_of(app, keep)
    assert len(operations_of(document)) >= (10 if made is gateway_document else 35)


def test_the_admin_document_has_no_ingest_route_and_the_gateway_one_no_admin_route() -> None:
    _, gateway = gateway_document()
    _, admin = admin_document()
    assert not [path for path in gateway["paths"] if path.startswith("/admin")]
    assert {path for path in admin["paths"] if not path.startswith("/admin/v1/")} == {
        "/healthz", "/readyz", "/metrics", "/openapi.json"}


def test_bodies_and_answers_come_from_the_models() -> None:
    _, admin = admin_document()
    create = admin["paths"]["/admin/v1/apps"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/AppIn"}
    app_in = admin["components"]["schemas"]["AppIn"]
    assert app_in["additionalProperties"] is False and set(app_in["required"]) == {"name", "platform"}
    assert create["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/App"}
    # What every admin route answers (the token's 401, the database's 503) and what reading a body answers.
    assert {"400", "401", "408", "409", "413", "503"} <= set(create["responses"])
    _, gateway = gateway_document()
    events = gateway["paths"]["/v1/events"]["post"]
    assert {"$ref": "#/components/schemas/EventIn"} in events["requestBody"]["content"]["application/json"][
        "schema"]["anyOf"]
    assert "device_id" in gateway["components"]["schemas"]["DeviceIn"]["required"]


def test_query_parameters_have_no_null_and_keep_their_bounds() -> None:
    _, admin = admin_document()
    for path, item in admin["paths"].items():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                assert "null" not in str(parameter["schema"]), (path, parameter)
    limit = next(p for p in admin["paths"]["/admin/v1/apps"]["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"] == {"default": 100, "maximum": 1000, "minimum": 1, "type": "integer"}
    report = {p["name"]: p for p in admin["paths"]["/admin/v1/apps/{app_id}/report"]["get"]["parameters"]}
    assert set(report) == {"app_id", "from", "to", "group_by", "format"}
    assert report["group_by"]["schema"]["enum"] == ["day", "network", "campaign", "country"]


def test_a_handler_docstring_is_its_description() -> None:
    _, admin = admin_document()
    assert "group_by" in admin["paths"]["/admin/v1/apps/{app_id}/report"]["get"]["description"]


class Thing(BaseModel):
    name: str


def test_a_route_without_an_operation_stops_the_build() -> None:
    app = web.Application()

    @documented(Operation("A thing", {200: Answer("it", Thing)}))
    async def thing(_request: web.Request) -> web.Response:
        return web.Response()

    async def bare(_request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get("/thing", thing)
    spec = gateway_docs.SPEC
    assert build_document(app.router.routes(), spec)["components"]["schemas"]["Thing"]["required"] == ["name"]
    app.router.add_post("/bare", bare)
    with pytest.raises(UndocumentedRoute, match="POST /bare"):
        build_document(app.router.routes(), spec)
