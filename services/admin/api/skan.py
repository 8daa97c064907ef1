"""SKAN conversion schemas and postbacks."""

from __future__ import annotations

from aiohttp import web

from services.admin.guard import AdminContext
from shared.errors import InputError
from shared.web import error_response, json_object_body, json_response


def add_routes(routes: web.RouteTableDef, ctx: AdminContext) -> None:
    store = ctx.store

    @routes.put("/admin/v1/apps/{app_id}/skan/schema")
    @ctx.guarded
    async def put_skan_schema(request: web.Request) -> web.StreamResponse:
        body = await json_object_body(request)
        if isinstance(body, web.Response):
            return body
        try:
            return json_response(await ctx.call(store.put_skan_schema, request.match_info["app_id"], body))
        except InputError as exc:  # the schema's own (decode.parse_schema): the message names the field too
            return error_response(400, "invalid_schema", str(exc), exc.field)
        except OverflowError:  # valid_from like 0001-01-01T00:00:00+14:00: outside datetime's range in UTC
            return error_response(400, "invalid_schema", "valid_from: is out of range", "valid_from")

    @routes.get("/admin/v1/apps/{app_id}/skan/schema")
    @ctx.guarded
    async def skan_schema_in_force(request: web.Request) -> web.StreamResponse:
        return json_response(await ctx.call(store.skan_schema_in_force, request.match_info["app_id"]))

    @routes.get("/admin/v1/apps/{app_id}/skan/schemas")
    @ctx.guarded
    async def skan_schemas(request: web.Request) -> web.StreamResponse:
        return json_response({"schemas": await ctx.call(store.skan_schemas, request.match_info["app_id"])})

    @routes.get("/admin/v1/skan/postbacks/{transaction_id}")
    @ctx.guarded
    async def skan_postback(request: web.Request) -> web.StreamResponse:
        return json_response(await ctx.call(store.skan_postbacks, request.match_info["transaction_id"]))
