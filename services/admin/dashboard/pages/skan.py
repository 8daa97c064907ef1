"""App → SKAN: the conversion schema in force (shown, and edited as JSON, checked by the decoder's own
parse_schema through the store), the schemas stored, the app's postbacks (paged), and one postback: its signature
check, its decoded records and the postbacks forwarded to ad networks for it."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from services.admin.api.apps import next_cursor
from services.admin.dashboard.site import Dashboard, form_of, page_position, same_as_api
from shared.errors import InputError, NotFound

PAGE_SIZE = 50
EXAMPLE_SCHEMA = {"schema_id": "v1", "valid_from": "2025-01-01T00:00:00Z", "mode": "revenue",
                  "event_name": "purchase", "currency": "USD", "unit": 1.0}


def pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def add_routes(routes: web.RouteTableDef, dash: Dashboard) -> None:
    store = dash.store

    async def skan_page(request: web.Request, typed: str | None = None, error: str | None = None,
                        status: int = 200) -> web.Response:
        app = await dash.app_of(request)
        schemas = await dash.ctx.call(store.skan_schemas, app["app_id"])
        in_force = next((schema for schema in schemas if schema["in_force"]), None)
        after = page_position(request.query.get("cursor"), (int, str, int))
        postbacks, position = await dash.ctx.call(store.skan_postback_page, app["app_id"], PAGE_SIZE, after)
        shown = typed if typed is not None else pretty(in_force["schema"] if in_force else EXAMPLE_SCHEMA)
        return dash.render(request, "apps/skan.html", {
            "app": app, "in_force": in_force, "in_force_json": pretty(in_force["schema"]) if in_force else "",
            "schemas": schemas, "postbacks": postbacks, "next": next_cursor(position), "first_page": after is None,
            "schema_text": shown, "error": error, "saved": "saved" in request.query}, status=status)

    @routes.get("/apps/{app_id}/skan")
    @dash.page
    async def skan(request: web.Request) -> web.StreamResponse:
        return await skan_page(request)

    @routes.post("/apps/{app_id}/skan/schema")
    @dash.action(same_as_api("PUT /admin/v1/apps/{app_id}/skan/schema"))
    async def put_schema(request: web.Request) -> web.StreamResponse:
        app = await dash.app_of(request)
        text = str((await form_of(request)).get("schema", ""))
        try:
            body = orjson.loads(text)
            if not isinstance(body, dict):
                raise InputError("body", "must be a JSON object")
            await dash.ctx.call(store.put_skan_schema, app["app_id"], body)
        except orjson.JSONDecodeError as exc:
            return await skan_page(request, text, f"not JSON: {exc}", 400)
        except InputError as exc:  # the schema's own check names the field
            return await skan_page(request, text, f"{exc.field}: {exc.message}", 400)
        except OverflowError:
            return await skan_page(request, text, "valid_from: is out of range", 400)
        return dash.see_other(f"/apps/{app['app_id']}/skan?saved=1")

    @routes.get("/apps/{app_id}/skan/postbacks/{transaction_id}")
    @dash.page
    async def postback(request: web.Request) -> web.StreamResponse:
        app = await dash.app_of(request)
        transaction_id = request.match_info["transaction_id"]
        found = await dash.ctx.call(store.skan_postbacks, transaction_id)
        if found["app_id"] != app["app_id"]:
            raise NotFound(f"no postback with transaction-id {transaction_id} for app {app['app_id']}")
        sent = await dash.ctx.call(store.skan_postbacks_sent, app["app_id"], transaction_id)
        return dash.render(request, "apps/skan_postback.html", {
            "app": app, "transaction_id": transaction_id, "windows": found["postbacks"], "sent": sent,
            "pretty": pretty})
