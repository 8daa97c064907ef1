"""App → Reports: the admin API's app report (services/admin/stores/reports.py) over a date range, drawn as charts
(services/admin/dashboard/charts.py) and tables, with the same report as CSV (the API's `format=csv`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from markupsafe import Markup

from services.admin.api.reports import parse_report_query, report_csv, report_filename
from services.admin.dashboard import charts
from services.admin.dashboard.site import Dashboard
from services.admin.stores.reports import FORWARD_STATUSES, ReportRequest
from shared.errors import InputError
from shared.runtime import now_ms


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date().isoformat()


def report_view(report: Mapping[str, Any]) -> dict[str, Any]:
    """What the page shows of a report grouped by day, besides the installs chart: the tables' rows and the series
    of forwards per day by status."""
    days = charts.report_days(report)
    forwards = report["forwards"]
    forwards_by_status = charts.per_day(days, forwards["rows"],
                                 lambda row: {status: row[status] for status in FORWARD_STATUSES if row[status]})
    conversions: dict[str, dict[str, int]] = {}
    for row in report["conversions"]["rows"]:
        figures = conversions.setdefault(row["event_name"] or "(unnamed)", {"events": 0, "delivered": 0})
        figures["events"] += row["events"]
        figures["delivered"] += row["delivered"]
    forwards_by_network: dict[str, dict[str, int]] = {}
    for row in forwards["rows"]:
        figures = forwards_by_network.setdefault(row["network"] or "(none)",
                                                 dict.fromkeys((*FORWARD_STATUSES, "total"), 0))
        for name in figures:
            figures[name] += row[name]
    return {
        "days": days, "installs_totals": report["installs"]["totals"], "forwards_by_status": forwards_by_status,
        "forwards_by_network": dict(sorted(forwards_by_network.items())), "forwards_totals": forwards["totals"],
        "statuses": FORWARD_STATUSES, "conversions": dict(sorted(conversions.items())),
        "conversions_totals": report["conversions"]["totals"],
        "revenue_recorded": report["conversions"].get("revenue_recorded", False),
        "skan_totals": report["skan"]["totals"],
    }


def drawn(report: Mapping[str, Any], view: Mapping[str, Any]) -> dict[str, Markup]:
    """The charts (charts.py: SVG drawn here, each with its figures as a table)."""
    days, installs = charts.installs_by_day(report)
    shown: dict[str, Markup] = {
        "installs_chart": charts.stacked_bars(days, installs, title="Installs per day by network", unit="installs"),
        "installs_table": charts.chart_table(days, installs, unit="installs", caption="Installs per day by network"),
    }
    if view["forwards_by_status"]:
        by_status = view["forwards_by_status"]
        shown["forwards_chart"] = charts.stacked_bars(view["days"], by_status, title="Forwards per day by status",
                                                      unit="forwards")
        shown["forwards_table"] = charts.chart_table(view["days"], by_status, unit="forwards",
                                                     caption="Forwards per day by status")
    return shown


def add_routes(routes: web.RouteTableDef, dash: Dashboard) -> None:
    store = dash.store

    def asked(request: web.Request) -> tuple[ReportRequest, dict[str, str]]:
        """The range asked for (the API's rules: dates in UTC, `to` included, 7 days by default, at most 366), and
        the field refused, if one was (the default range is shown then)."""
        given = {name: value for name in ("from", "to") if (value := request.query.get(name, "").strip())}
        try:
            return parse_report_query(request.match_info["app_id"], given, now_ms())[0], {}
        except InputError as exc:
            return parse_report_query(request.match_info["app_id"], {}, now_ms())[0], {exc.field: exc.message}

    @routes.get("/apps/{app_id}/reports")
    @dash.page
    async def reports(request: web.Request) -> web.StreamResponse:
        app = await dash.app_of(request)
        report_request, errors = asked(request)
        report = await dash.ctx.call(store.report, report_request)
        view = report_view(report)
        last_day = _day(report["to_ms"] - 1)
        return dash.render(request, "apps/reports.html", {
            "app": app, "report": report, "view": view, "errors": errors,
            "values": {"from": request.query.get("from") or _day(report["from_ms"]),
                       "to": request.query.get("to") or last_day},
            "range": {"from": _day(report["from_ms"]), "to": last_day},
            "charts": drawn(report, view),
        }, status=400 if errors else 200)

    @routes.get("/apps/{app_id}/reports.csv")
    @dash.page
    async def report_download(request: web.Request) -> web.StreamResponse:
        await dash.app_of(request)
        report_request, errors = asked(request)
        if errors:
            return dash.problem(request, 400, "Report not made", "; ".join(f"{k}: {v}" for k, v in errors.items()))
        report = await dash.ctx.call(store.report, report_request)
        response = web.Response(text=await dash.ctx.call(report_csv, report), content_type="text/csv",
                                charset="utf-8")
        response.headers["Content-Disposition"] = f'attachment; filename="{report_filename(report)}"'
        return response
