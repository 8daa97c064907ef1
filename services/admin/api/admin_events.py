"""Admin events: every mutating admin request answered below 500, newest first (recorded by guard.py's
`guarded`, for every route alike). Paged as the apps list is: `?limit=`, `?cursor=` (the `next` of the page
before); `?app_id=` keeps one app's."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from services.admin.api.apps import PageQuery, next_cursor, page_query
from services.admin.guard import AdminContext
from services.admin.openapi import operation
from shared.openapi import Answer, documented
from shared.web import json_response


class AdminEventsQuery(PageQuery):
    app_id: str | None = None


class AdminEvent(BaseModel):
    id: int
    at_ms: int
    token_id: str
    action: str
    method: str
    path: str
    app_id: str | None
    status: int


class AdminEventsPage(BaseModel):
    admin_events: list[AdminEvent]
    next: str | None


def add_routes(routes: web.RouteTableDef, ctx: AdminContext) -> None:
    store = ctx.store

    @routes.get("/admin/v1/admin-events")
    @documented(operation("Admin events: who (token id) did what to which app, newest first",
                          {200: Answer("a page of events", AdminEventsPage)}, query=AdminEventsQuery))
    @ctx.guarded
    async def admin_events(request: web.Request) -> web.StreamResponse:
        limit, before = page_query(request, (int,))
        app_id = request.query.get("app_id", "").strip() or None
        events, position = await ctx.call(store.admin_events, app_id, limit, before[0] if before else None)
        return json_response({"admin_events": events, "next": next_cursor((position,) if position else None)})
