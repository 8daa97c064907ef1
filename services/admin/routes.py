"""The admin API under /admin/v1: every resource module's routes, behind the admin token."""

from __future__ import annotations

from aiohttp import web

from services.admin.api import admin_events, apps, audit, dlq, integrations, privacy, reports, skan
from services.admin.guard import AdminContext

RESOURCES = (apps, integrations, skan, audit, dlq, privacy, reports, admin_events)


def admin_routes(ctx: AdminContext) -> web.RouteTableDef:
    routes = web.RouteTableDef()
    for resource in RESOURCES:
        resource.add_routes(routes, ctx)
    return routes
