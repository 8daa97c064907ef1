"""Integrations, and the networks they can be for."""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field, StrictBool

from services.admin.guard import AdminContext, Body
from services.admin.integration_settings import described, integration_names
from services.admin.openapi import operation
from shared.openapi import Answer, documented
from shared.web import error_response, json_response, model_body


class IntegrationIn(Body):
    enabled: bool = True
    settings: dict[str, Any] = Field(default_factory=dict)
    credentials: dict[str, Any] | None = None
    event_map: dict[str, Any] = Field(default_factory=dict)


class IntegrationPatch(Body):
    """Only what can change without the network's models checking it: anything else is a 400 naming it."""

    enabled: StrictBool | None = None
    event_map: dict[str, Any] | None = None


class Integration(BaseModel):
    app_id: str
    network: str
    enabled: bool
    settings: dict[str, Any]
    event_map: dict[str, Any]
    credentials_set: bool = Field(description="credentials themselves are write-only")
    updated_at_ms: int


class Integrations(BaseModel):
    integrations: list[Integration]


class DeletedIntegration(BaseModel):
    app_id: str
    network: str
    deleted: Literal[True]


class ConnectionVerdict(BaseModel):
    ok: bool
    detail: str


class Network(BaseModel):
    """A network (kind forward) or an inbound source (kind source); forms can be rendered from the schemas."""

    network: str
    title: str
    kind: Literal["forward", "source"]
    settings_schema: dict[str, Any]
    credentials_schema: dict[str, Any]
    feed: str | None = None
    click_id_types: list[str] | None = None
    click_id_params: list[str] | None = None
    default_event_names: dict[str, str] | None = None
    event_names_setting: str | None = None
    forwards_unattributed: bool | None = None
    batch_limit: int | None = None
    base_url_variable: str | None = None


class Networks(BaseModel):
    networks: list[Network]


APP_NETWORK = {"app_id": {"description": "an app's id"},
               "network": {"enum": list(integration_names()), "description": "any other network is a 404"}}


def add_routes(routes: web.RouteTableDef, ctx: AdminContext) -> None:
    store, connection_tester = ctx.store, ctx.connection_tester

    @routes.get("/admin/v1/networks")
    @documented(operation("Every network and inbound source, with its settings and credentials JSON schemas",
                          {200: Answer("from the network registry", Networks)}))
    @ctx.guarded
    async def networks(request: web.Request) -> web.StreamResponse:
        return json_response({"networks": described()})

    @routes.get("/admin/v1/apps/{app_id}/integrations")
    @documented(operation("The app's integrations", {200: Answer("credentials are never returned", Integrations),
                                                       404: "NotFound"}, path=APP_NETWORK))
    @ctx.guarded
    async def list_integrations(request: web.Request) -> web.StreamResponse:
        return json_response({"integrations": await ctx.call(store.list_integrations, request.match_info["app_id"])})

    @routes.put("/admin/v1/apps/{app_id}/integrations/{network}")
    @documented(operation("Create or replace an integration (credentials write-only)",
                          {200: Answer("stored", Integration), 404: "NotFound"}, body=IntegrationIn,
                          body_required=False, path=APP_NETWORK,
                          description="A wrong or missing setting or credential is a 400 invalid_integration "
                                      "naming it (settings.dataset_id); settings and credentials are checked "
                                      "against the network's schemas (GET /admin/v1/networks), and kept as "
                                      "stored when omitted."))
    @ctx.guarded
    async def put_integration(request: web.Request) -> web.StreamResponse:
        body = await model_body(request, IntegrationIn)
        fields = body.model_dump(exclude_unset=True)
        stored = await ctx.call(store.put_integration, request.match_info["app_id"], ctx.network_of(request), fields)
        return json_response(stored)

    @routes.patch("/admin/v1/apps/{app_id}/integrations/{network}")
    @documented(operation("Enable or disable an integration, or change its event map",
                          {200: Answer("the integration as changed", Integration), 404: "NotFound"},
                          body=IntegrationPatch, path=APP_NETWORK))
    @ctx.guarded
    async def patch_integration(request: web.Request) -> web.StreamResponse:
        app_id, network = request.match_info["app_id"], ctx.network_of(request)
        body = await model_body(request, IntegrationPatch)
        changes = body.model_dump(exclude_unset=True)
        for name, value in changes.items():
            if value is None:
                return error_response(400, "invalid_request", f"{name} cannot be null", name)
        if not changes:
            return error_response(400, "invalid_request", "give enabled and/or event_map", "body")
        return json_response(await ctx.call(store.patch_integration, app_id, network, changes))

    @routes.delete("/admin/v1/apps/{app_id}/integrations/{network}")
    @documented(operation("Delete an integration", {200: Answer("deleted", DeletedIntegration), 404: "NotFound"},
                          path=APP_NETWORK))
    @ctx.guarded
    async def delete_integration(request: web.Request) -> web.StreamResponse:
        app_id, network = request.match_info["app_id"], ctx.network_of(request)
        await ctx.call(store.delete_integration, app_id, network)
        return json_response({"app_id": app_id, "network": network, "deleted": True})

    @routes.get("/admin/v1/apps/{app_id}/integrations/{network}")
    @documented(operation("One integration", {200: Answer("credentials are never returned", Integration),
                                            404: "NotFound"}, path=APP_NETWORK))
    @ctx.guarded
    async def get_integration(request: web.Request) -> web.StreamResponse:
        app_id, network = request.match_info["app_id"], ctx.network_of(request)
        return json_response(await ctx.call(store.get_integration, app_id, network))

    @routes.post("/admin/v1/apps/{app_id}/integrations/{network}/test")
    @documented(operation("Test Connection: a dry run against the network that records no conversion",
                          {200: Answer("the network's verdict", ConnectionVerdict), 404: "NotFound"},
                          path=APP_NETWORK))
    @ctx.guarded
    async def test_integration(request: web.Request) -> web.StreamResponse:
        integration = await ctx.call(store.integration_config, request.match_info["app_id"], ctx.network_of(request))
        if connection_tester is None:
            return error_response(503, "unavailable", "connection tests are not configured")
        check = await connection_tester(integration)
        return json_response({"ok": check.ok, "detail": check.detail})
