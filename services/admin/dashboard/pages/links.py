"""An app's tracking links: the list (paged), create one per network and campaign, copy its URL, delete."""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from services.admin.api.apps import LinkIn, next_cursor
from services.admin.dashboard.forms import field_errors, model_values, text_fields
from services.admin.dashboard.site import Dashboard, form_of, page_position, same_as_api
from shared.networks.registry import registry

PAGE_SIZE = 50


def add_routes(routes: web.RouteTableDef, dash: Dashboard) -> None:
    store, public_base_url = dash.store, dash.ctx.public_base_url

    async def links_page(request: web.Request, errors: dict[str, str] | None = None,
                         values: dict[str, str] | None = None, status: int = 200) -> web.Response:
        app = await dash.app_of(request)
        after = page_position(request.query.get("cursor"), (int, str))
        links, position = await dash.ctx.call(store.list_links, app["app_id"], public_base_url, PAGE_SIZE, after)
        networks = [(spec.name, spec.title) for spec in registry().networks]
        return dash.render(request, "apps/links.html", {
            "app": app, "links": links, "next": next_cursor(position), "first_page": after is None,
            "networks": networks, "errors": errors or {}, "values": values or {},
            "created": request.query.get("created"), "deleted": request.query.get("deleted")}, status=status)

    @routes.get("/apps/{app_id}/links")
    @dash.page
    async def links(request: web.Request) -> web.StreamResponse:
        return await links_page(request)

    @routes.post("/apps/{app_id}/links")
    @dash.action(same_as_api("POST /admin/v1/apps/{app_id}/links"))
    async def create_link(request: web.Request) -> web.StreamResponse:
        app = await dash.app_of(request)
        form = await form_of(request)
        try:
            body = LinkIn.model_validate(model_values(LinkIn, form, blank_is_null=False))
        except ValidationError as exc:
            return await links_page(request, field_errors(exc), text_fields(form, LinkIn.model_fields), 400)
        created = await dash.ctx.call(store.create_link, app["app_id"], body.model_dump(), public_base_url)
        return dash.see_other(f"/apps/{app['app_id']}/links?created={created['link_id']}")

    @routes.post("/apps/{app_id}/links/{link_id}/delete")
    @dash.action(same_as_api("DELETE /admin/v1/apps/{app_id}/links/{link_id}"))
    async def delete_link(request: web.Request) -> web.StreamResponse:
        app_id, link_id = request.match_info["app_id"], request.match_info["link_id"]
        await dash.ctx.call(store.delete_link, app_id, link_id, public_base_url)
        return dash.see_other(f"/apps/{app_id}/links?deleted={link_id}")
