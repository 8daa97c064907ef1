"""The dashboard: server-rendered pages at / on the admin service's port, beside /admin/v1.

Templates (Jinja2 through aiohttp-jinja2, autoescaped) in templates/, the stylesheet, htmx (vendored, see
static/VENDORED.md) and a small script of our own in static/; no build step, nothing fetched at run time. Pages
call the admin store and check input with the admin API's own models (pages/), behind a session signed in with
the admin token (sessions.py), every answer under a strict Content-Security-Policy (security.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
import jinja2
import orjson
from aiohttp import web

from services.admin.dashboard import sessions
from services.admin.dashboard.pages import (
    apps,
    audit,
    dead_letters,
    health,
    integrations,
    keys,
    links,
    reports,
    signin,
    skan,
)
from services.admin.dashboard.security import security_headers
from services.admin.dashboard.site import Dashboard
from services.admin.guard import AdminContext
from shared.settings import Settings

STATIC = Path(__file__).with_name("static")
PAGES = (signin, apps, keys, links, integrations, reports, skan, audit, dead_letters, health)
DEFAULT_SESSION_HOURS = 12.0


def when(epoch_ms: int | None) -> str:
    """2026-05-01 12:00:03 UTC."""
    if epoch_ms is None:
        return ""
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def dom_id(text: str) -> str:
    """Text usable as an element id (a form field's name: settings.dataset_id -> settings-dataset_id)."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", str(text))


def query_string(values: dict[str, Any]) -> str:
    return urlencode({name: value for name, value in values.items() if value not in (None, "")})


def pretty_json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def add_dashboard(app: web.Application, ctx: AdminContext, settings: Settings | None = None) -> None:
    """The dashboard's routes, templates, static files and security headers, on the admin service's app."""
    dash = Dashboard(ctx, settings.dashboard_session_hours if settings else DEFAULT_SESSION_HOURS, settings)
    filters: dict[str, Callable[..., str]] = {"when": when, "dom_id": dom_id, "query": query_string,
                                              "pretty_json": pretty_json}
    aiohttp_jinja2.setup(app, loader=jinja2.PackageLoader(__name__, "templates"), autoescape=True,
                         trim_blocks=True, lstrip_blocks=True, filters=filters)
    routes = web.RouteTableDef()
    for page in PAGES:
        page.add_routes(routes, dash)
    app.router.add_routes(routes)
    app.router.add_static("/static/", STATIC)
    app[sessions.ALWAYS_SECURE] = bool(settings and settings.dashboard_secure_cookies)
    app.on_response_prepare.append(security_headers)
    app.on_cleanup.append(dash.close)
