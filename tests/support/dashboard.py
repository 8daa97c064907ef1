"""Helpers for tests of the dashboard (services/admin/dashboard/): the admin service's app in process on a real
database, an HTTP client with a cookie jar, signing in, and reading forms' CSRF tokens out of pages."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import Engine

from services.admin.app import build_app
from services.admin.dashboard.sessions import COOKIE
from services.admin.guard import DeadLetterLister
from services.admin.store import AdminStore
from shared.db.session import make_engine, make_sessionmaker
from shared.forwarding.model import ConnectionCheck, Integration
from shared.settings import Settings
from tests.support.pipeline import ADMIN_TOKEN, SECRET_KEY

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token of the first form of a page."""
    found = _CSRF.search(html)
    assert found, "no form with a CSRF token on this page"
    return found.group(1)


@dataclass
class AdminService:
    """One admin service process's app, in process: another one on the same database is another replica."""

    app: web.Application
    store: AdminStore
    engine: Engine
    tested: list[Integration]

    def dispose(self) -> None:
        self.engine.dispose()


def admin_service(database_url: str, *, admin_token: str | None = ADMIN_TOKEN, session_hours: float = 12.0,
                  connection_ok: bool = True, dead_letters: DeadLetterLister | None = None) -> AdminService:
    engine = make_engine(database_url)
    store = AdminStore(make_sessionmaker(engine), SECRET_KEY)
    tested: list[Integration] = []

    async def tester(integration: Integration) -> ConnectionCheck:
        tested.append(integration)
        return ConnectionCheck(connection_ok, "dataset ds-1 is reachable" if connection_ok else "token revoked")

    settings = Settings(dashboard_session_hours=session_hours)
    app = build_app(store, admin_token=admin_token, public_base_url="http://gateway.test", max_body_bytes=1 << 20,
                    connection_tester=tester, dead_letters=dead_letters, settings=settings)
    return AdminService(app, store, engine, tested)


async def client_of(service: AdminService) -> TestClient[web.Request, web.Application]:
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(service.app))
    await client.start_server()
    return client


async def sign_in(client: TestClient[Any, Any], token: str = ADMIN_TOKEN, next_page: str = "/apps") -> str:
    """Signs the client in; the session cookie's value."""
    page = await client.get("/signin")
    assert page.status == 200
    answer = await client.post("/signin", data={"csrf_token": csrf_of(await page.text()), "token": token,
                                                "next": next_page}, allow_redirects=False)
    assert answer.status == 303, await answer.text()
    return answer.cookies[COOKIE].value
