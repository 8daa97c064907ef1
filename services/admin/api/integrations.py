"""Integrations, and the networks they can be for."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import Field, StrictBool

from services.admin.guard import AdminContext, Body
from services.admin.integration_settings import described
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


def add_routes(routes: web.RouteTableDef, ctx: AdminContext) -> None:
    store, connection_tester = ctx.store, ctx.connection_tester

    @routes.get("/admin/v1/networks")
    @ctx.guarded
    async def networks(request: web.Request) -> web.StreamResponse:
        return json_response({"networks": described()})

    @routes.get("/admin/v1/apps/{app_id}/integrations")
    @ctx.guarded
    async def list_integrations(request: web.Request) -> web.StreamResponse:
        return json_response({"integrations": await ctx.call(store.list_integrations, request.match_info["app_id"])})

    @routes.put("/admin/v1/apps/{app_id}/integrations/{network}")
    @ctx.guarded
    async def put_integration(request: web.Request) -> web.StreamResponse:
        body = await model_body(request, IntegrationIn)
        fields = body.model_dump(exclude_unset=True)
        stored = await ctx.call(store.put_integration, request.match_info["app_id"], ctx.network_of(request), fields)
        return json_response(stored)

    @routes.patch("/admin/v1/apps/{app_id}/integrations/{network}")
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
    @ctx.guarded
    async def delete_integration(request: web.Request) -> web.StreamResponse:
        app_id, network = request.match_info["app_id"], ctx.network_of(request)
        await ctx.call(store.delete_integration, app_id, network)
        return json_response({"app_id": app_id, "network": network, "deleted": True})

    @routes.get("/admin/v1/apps/{app_id}/integrations/{network}")
    @ctx.guarded
    async def get_integration(request: web.Request) -> web.StreamResponse:
        app_id, network = request.match_info["app_id"], ctx.network_of(request)
        return json_response(await ctx.call(store.get_integration, app_id, network))

    @routes.post("/admin/v1/apps/{app_id}/integrations/{network}/test")
    @ctx.guarded
    async def test_integration(request: web.Request) -> web.StreamResponse:
        integration = await ctx.call(store.integration_config, request.match_info["app_id"], ctx.network_of(request))
        if connection_tester is None:
            return error_response(503, "unavailable", "connection tests are not configured")
        check = await connection_tester(integration)
        return json_response({"ok": check.ok, "detail": check.detail})
