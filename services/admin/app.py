"""The admin service's web application: the /admin/v1 API behind the admin token, health, metrics and its
OpenAPI document. It is not the gateway: it listens on its own port (APPREFER_ADMIN_PORT), off the internet."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.admin.guard import AdminContext, ConnectionTester, DeadLetterLister
from services.admin.openapi import document as openapi_document
from services.admin.routes import admin_routes
from services.admin.store import AdminStore
from shared.web import answers_counted, json_response

Readiness = Callable[[], Awaitable[None]]


def build_app(store: AdminStore, *, admin_token: str | None, public_base_url: str, max_body_bytes: int,
              readiness: Readiness | None = None, connection_tester: ConnectionTester | None = None,
              dead_letters: DeadLetterLister | None = None) -> web.Application:
    app = web.Application(client_max_size=max_body_bytes, middlewares=[answers_counted("admin service")])

    async def healthz(_request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        try:
            if readiness is not None:
                await readiness()
        except Exception as exc:
            return json_response({"status": "unavailable", "reason": str(exc)}, 503)
        return json_response({"status": "ready"})

    async def metrics(_request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest())
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    async def openapi(_request: web.Request) -> web.Response:
        return json_response(openapi_document())

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_routes(admin_routes(AdminContext(store, admin_token, public_base_url, connection_tester,
                                                    dead_letters)))
    return app
