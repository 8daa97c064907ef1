"""Apps: the list (paged), create, the app's page (edit its attribution windows and store details), delete
after a confirmation. Bodies are checked by the admin API's own models (AppIn, AppPatch)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from services.admin.api.apps import AppIn, AppPatch, next_cursor
from services.admin.dashboard.forms import field_errors, model_values, text_fields
from services.admin.dashboard.site import ACTED_ON_APP, Dashboard, form_of, page_position, same_as_api
from services.admin.stores.apps import Conflict

PAGE_SIZE = 50


def shown(values: dict[str, Any]) -> dict[str, str]:
    """An app's (or a model's defaults') values as a form shows them."""
    return {name: "" if value is None else str(value) for name, value in values.items()}


def add_routes(routes: web.RouteTableDef, dash: Dashboard) -> None:
    store = dash.store
    defaults = shown({name: info.default for name, info in AppIn.model_fields.items() if not info.is_required()})

    @routes.get("/apps")
    @dash.page
    async def apps(request: web.Request) -> web.StreamResponse:
        after = page_position(request.query.get("cursor"), (int, str))
        listed, position = await dash.ctx.call(store.list_apps, PAGE_SIZE, after)
        return dash.render(request, "apps/list.html", {
            "apps": listed, "next": next_cursor(position), "first_page": after is None,
            "deleted": request.query.get("deleted")})

    @routes.get("/apps/new")
    @dash.page
    async def new_app(request: web.Request) -> web.StreamResponse:
        return dash.render(request, "apps/new.html", {"values": defaults, "errors": {}})

    @routes.post("/apps")
    @dash.action(same_as_api("POST /admin/v1/apps"))
    async def create_app(request: web.Request) -> web.StreamResponse:
        form = await form_of(request)
        try:
            body = AppIn.model_validate(model_values(AppIn, form, blank_is_null=False))
            created = await dash.ctx.call(store.create_app, body.model_dump())
        except ValidationError as exc:
            errors, status = field_errors(exc), 400
        except Conflict as exc:
            errors, status = {exc.field: exc.message}, 409
        else:
            request[ACTED_ON_APP] = created["app_id"]
            return dash.see_other(f"/apps/{created['app_id']}?created=1")
        values = {**defaults, **text_fields(form, AppIn.model_fields)}
        return dash.render(request, "apps/new.html", {"values": values, "errors": errors}, status=status)

    @routes.get("/apps/{app_id}")
    @dash.page
    async def app_page(request: web.Request) -> web.StreamResponse:
        app = await dash.app_of(request)
        return dash.render(request, "apps/app.html", {
            "app": app, "values": shown(app), "errors": {}, "saved": "saved" in request.query,
            "created": "created" in request.query})

    @routes.post("/apps/{app_id}")
    @dash.action(same_as_api("PATCH /admin/v1/apps/{app_id}"))
    async def patch_app(request: web.Request) -> web.StreamResponse:
        app = await dash.app_of(request)
        form = await form_of(request)
        try:
            body = AppPatch.model_validate(model_values(AppPatch, form, blank_is_null=True))
            await dash.ctx.call(store.patch_app, app["app_id"], body.model_dump(exclude_unset=True))
        except ValidationError as exc:
            errors, status = field_errors(exc), 400
        except Conflict as exc:
            errors, status = {exc.field: exc.message}, 409
        else:
            return dash.see_other(f"/apps/{app['app_id']}?saved=1")
        values = {**shown(app), **text_fields(form, AppPatch.model_fields)}
        return dash.render(request, "apps/app.html", {
            "app": app, "values": values, "errors": errors, "saved": False, "created": False}, status=status)

    @routes.get("/apps/{app_id}/delete")
    @dash.page
    async def confirm_delete(request: web.Request) -> web.StreamResponse:
        return dash.render(request, "apps/delete.html", {"app": await dash.app_of(request)})

    @routes.post("/apps/{app_id}/delete")
    @dash.action(same_as_api("DELETE /admin/v1/apps/{app_id}"))
    async def delete_app(request: web.Request) -> web.StreamResponse:
        deleted = await dash.ctx.call(store.delete_app, request.match_info["app_id"])
        return dash.see_other(f"/apps?deleted={deleted['app_id']}")
