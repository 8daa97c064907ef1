"""Health: each service's readiness and consumer lag, and the depth of every retry and dead-letter topic, as
services/admin/dashboard/health.py collects them from the services' own /readyz and /metrics."""

from __future__ import annotations

from aiohttp import web

from services.admin.dashboard.health import collect
from services.admin.dashboard.site import Dashboard


def add_routes(routes: web.RouteTableDef, dash: Dashboard) -> None:

    @routes.get("/health")
    @dash.page
    async def health(request: web.Request) -> web.StreamResponse:
        if dash.settings is None:
            return dash.render(request, "health.html", {
                "report": None, "missing": "this admin service was started without its settings"}, status=503)
        report = await collect(dash.settings, dash.http())
        return dash.render(request, "health.html", {"report": report, "missing": None})
