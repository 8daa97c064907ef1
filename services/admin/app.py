"""The admin service's web application: the /admin/v1 API behind the admin token, the dashboard at / (signed in
with the same token, services/admin/dashboard/), health, metrics and its OpenAPI document. It is not the gateway:
it listens on its own port (APPREFER_ADMIN_PORT), off the internet."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.admin.dashboard import add_dashboard
from services.admin.guard import ADMIN_PREFIX, AdminContext, ConnectionTester, DeadLetterLister
from services.admin.openapi import SPEC as OPENAPI_SPEC
from services.admin.routes import admin_routes
from services.admin.store import AdminStore
from shared.openapi import HEALTHZ, METRICS, OPENAPI, build_document, documented, readiness_operation
from shared.settings import Settings
from shared.web import answers_counted, json_response

Readiness = Callable[[], Awaitable[None]]
OPERATIONS_PATHS = ("/healthz", "/readyz", "/metrics", "/openapi.json")


def documents(path: str) -> bool:
    """The API and the operations routes are in the OpenAPI document; the dashboard's pages are not."""
    return path.startswith(ADMIN_PREFIX) or path in OPERATIONS_PATHS


def build_app(store: AdminStore, *, admin_token: str | None, public_base_url: str, max_body_bytes: int,
              readiness: Readiness | None = None, connection_tester: ConnectionTester | None = None,
              dead_letters: DeadLetterLister | None = None, settings: Settings | None = None) -> web.Application:
    app = web.Application(client_max_size=max_body_bytes, middlewares=[answers_counted("admin service")])

    @documented(HEALTHZ)
    async def healthz(_request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    @documented(readiness_operation("the database"))
    async def readyz(_request: web.Request) -> web.Response:
        try:
            if readiness is not None:
                await readiness()
        except Exception as exc:
            return json_response({"status": "unavailable", "reason": str(exc)}, 503)
        return json_response({"status": "ready"})

    @documented(METRICS)
    async def metrics(_request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest())
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    built: list[dict[str, Any]] = []  # the routes are all added before the first request

    @documented(OPENAPI)
    async def openapi(request: web.Request) -> web.Response:
        if not built:
            built.append(build_document(request.app.router.routes(), OPENAPI_SPEC, documents))
        return json_response(built[0])

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    ctx = AdminContext(store, admin_token, public_base_url, connection_tester, dead_letters)
    app.router.add_routes(admin_routes(ctx))
    add_dashboard(app, ctx, settings)  # `settings`: the sessions' length, and the services the health page asks
    return app
