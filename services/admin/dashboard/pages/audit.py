"""The audit log: the admin API's filters (app, network, status, event id, time range: services/admin/api/audit.py
audit_query) over its keyset pages (services/admin/stores/audit.py), newest first."""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from services.admin.api.audit import BadParameter, audit_query
from services.admin.dashboard.site import Dashboard
from services.admin.integration_settings import integration_names
from services.admin.stores.audit import AUDIT_FILTERS
from shared.forwarding.audit import STATUSES

PAGE_SIZE = 50
FILTERS = (*AUDIT_FILTERS, "since", "until")


def add_routes(routes: web.RouteTableDef, dash: Dashboard) -> None:
    store = dash.store

    @routes.get("/audit")
    @dash.page
    async def audit(request: web.Request) -> web.StreamResponse:
        values = {name: request.query.get(name, "").strip() for name in FILTERS}
        errors: dict[str, str] = {}
        records: list[dict[str, object]] = []
        following = None
        try:
            query = audit_query({**values, "limit": str(PAGE_SIZE), "cursor": request.query.get("cursor", "")})
        except BadParameter as exc:
            errors[exc.name] = str(exc)
        else:
            records, last_id = await dash.ctx.call(store.audit_page, query)
            if last_id is not None:
                following = "/audit?" + urlencode({**{k: v for k, v in values.items() if v}, "cursor": last_id})
        return dash.render(request, "audit.html", {
            "records": records, "values": values, "errors": errors, "next": following,
            "first_page": not request.query.get("cursor"), "statuses": [(status, status) for status in STATUSES],
            "networks": [(name, name) for name in integration_names()],
            "filtered": any(values.values())}, status=400 if errors else 200)
