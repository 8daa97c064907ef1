"""A device's attribution, and erasure of a person's data."""

from __future__ import annotations

from aiohttp import web
from pydantic import ConfigDict, Field

from services.admin.guard import AdminContext, Body
from services.privacy.erasure import hash_identifiers
from shared.errors import InputError
from shared.web import error_response, json_response, model_body


class ErasureIn(Body):
    # Hashed as the gateway hashes `user`, which takes values as sent (an external_id is not trimmed).
    model_config = ConfigDict(str_strip_whitespace=False)

    device_id: str | None = Field(None, max_length=100)
    external_id: str | None = Field(None, max_length=1000)
    email: str | None = Field(None, max_length=1000)
    phone: str | None = Field(None, max_length=100)
    dry_run: bool = Field(False, strict=True)


def add_routes(routes: web.RouteTableDef, ctx: AdminContext) -> None:
    store = ctx.store

    @routes.get("/admin/v1/apps/{app_id}/attribution")
    @ctx.guarded
    async def attribution(request: web.Request) -> web.StreamResponse:
        device_id = request.query.get("device_id", "").strip()
        if not device_id:
            return error_response(400, "invalid_request", "device_id is required", "device_id")
        sandbox = request.query.get("sandbox", "false").lower() in ("1", "true", "yes")
        return json_response(await ctx.call(store.attribution, request.match_info["app_id"], device_id, sandbox))

    @routes.post("/admin/v1/apps/{app_id}/erasure")
    @ctx.guarded
    async def erasure(request: web.Request) -> web.StreamResponse:
        body = await model_body(request, ErasureIn)
        try:
            identifiers = hash_identifiers(device_id=body.device_id, external_id=body.external_id,
                                           email=body.email, phone=body.phone)
        except InputError as exc:
            return error_response(400, "invalid_request", exc.message, exc.field)
        return json_response(await ctx.call(store.erase, request.match_info["app_id"], identifiers, body.dry_run))
