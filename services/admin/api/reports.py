"""An app's report: installs, conversions, forwards and SKAN over a time range, in JSON or CSV."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any, Literal, cast

from aiohttp import web
from pydantic import BaseModel, Field

from services.admin.guard import AdminContext
from services.admin.openapi import operation
from services.admin.stores.reports import DAY_MS, GROUP_BYS, GroupBy, ReportRequest
from shared.errors import InputError
from shared.openapi import Answer, documented
from shared.reports.figures import MAX_RANGE_DAYS
from shared.runtime import now_ms
from shared.web import error_response, json_response

PARAMETERS = ("from", "to", "group_by", "format")
FORMATS = ("json", "csv")
DEFAULT_DAYS = 7
MAX_DAYS = MAX_RANGE_DAYS
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_EPOCH_MS = re.compile(r"\d{1,15}")
LATEST_MS = 253_401_609_600_000  # 9999-12-24T00:00:00Z: a range (7 days from it by default) stays a datetime
# The long table of format=csv: one row per figure. Empty cells: the key does not apply to the row's section.
CSV_COLUMNS = ("section", "day", "attributed", "network", "campaign", "country", "event_name", "currency",
               "metric", "value")
CSV_KEY_COLUMN = {"ad_network_id": "network"}  # the SKAN section's network is its ad network id
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ReportQuery(BaseModel):
    from_: str | None = Field(None, alias="from", description="inclusive: a date (YYYY-MM-DD, UTC) or epoch ms")
    to: str | None = Field(None, description="a date includes that whole day; epoch ms is exclusive")
    group_by: Literal[GROUP_BYS] = "day"  # type: ignore[valid-type]
    format: Literal[FORMATS] = "json"  # type: ignore[valid-type]


class ReportSection(BaseModel):
    keys: list[str]
    rows: list[dict[str, Any]]
    totals: dict[str, Any]
    grouped_by: str | None
    notes: list[str]
    revenue_recorded: bool | None = None


class Report(BaseModel):
    app_id: str
    from_ms: int
    to_ms: int
    from_: str = Field(alias="from")
    to: str
    group_by: str
    timezone: Literal["UTC"]
    installs: ReportSection
    conversions: ReportSection
    forwards: ReportSection
    skan: ReportSection


def _moment(name: str, raw: str, end_of_day: bool) -> int:
    if _DATE.fullmatch(raw):
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            raise InputError(name, f"{raw!r} is not a date (YYYY-MM-DD)") from None
        moment = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
        moment += DAY_MS if end_of_day else 0
    elif _EPOCH_MS.fullmatch(raw):
        moment = int(raw)
    else:
        raise InputError(name, "must be a date (YYYY-MM-DD, UTC) or epoch milliseconds")
    if moment > LATEST_MS:
        raise InputError(name, "after 9999-12-24")
    return moment


def parse_report_query(app_id: str, query: Mapping[str, str], now: int) -> tuple[ReportRequest, str]:
    """The report asked for and its format; raises InputError naming the parameter that cannot be used.

    from: inclusive; a date is its 00:00 UTC. to: a date includes that whole day; epoch ms is exclusive.
    Neither given: the last 7 days, today (UTC) included. One given: 7 days from or up to it.
    """
    names = [name for name, _ in query.items()]  # a MultiDict's items() repeat a repeated name, its keys do not
    for name in names:
        if name not in PARAMETERS:
            raise InputError(name, f"unknown parameter; known: {', '.join(PARAMETERS)}")
        if names.count(name) > 1:
            raise InputError(name, "given more than once")
    group_by = query.get("group_by", "day")
    if group_by not in GROUP_BYS:
        raise InputError("group_by", f"must be one of {', '.join(GROUP_BYS)}")
    answer_format = query.get("format", "json")
    if answer_format not in FORMATS:
        raise InputError("format", f"must be one of {', '.join(FORMATS)}")
    span = DEFAULT_DAYS * DAY_MS
    to_ms = _moment("to", query["to"], end_of_day=True) if "to" in query else None
    from_ms = _moment("from", query["from"], end_of_day=False) if "from" in query else None
    if to_ms is None:
        to_ms = from_ms + span if from_ms is not None else (now // DAY_MS + 1) * DAY_MS
    if from_ms is None:
        from_ms = to_ms - span
    if from_ms >= to_ms:
        raise InputError("from", "must be before to")
    if to_ms - from_ms > MAX_DAYS * DAY_MS:
        raise InputError("to", f"the range is longer than {MAX_DAYS} days")
    return ReportRequest(app_id, from_ms, to_ms, cast(GroupBy, group_by)), answer_format


def _cell(value: Any) -> str:
    """A CSV cell; text a spreadsheet would run as a formula (a campaign named "=HYPERLINK(...)") gets a
    leading apostrophe. Numbers are written as they are (negative revenue stays a number)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv_rows(report: Mapping[str, Any]) -> Iterator[list[str]]:
    """The cells of each figure's row, in CSV_COLUMNS order (the key cells written once per report row)."""
    positions = {column: i for i, column in enumerate(CSV_COLUMNS)}
    currency_at, metric_at = positions["currency"], positions["metric"]
    for section in ("installs", "conversions", "forwards", "skan"):
        block = report[section]
        keys = block["keys"]
        key_positions = [positions[CSV_KEY_COLUMN.get(k, k)] for k in keys]
        for row in block["rows"]:
            base = [""] * len(CSV_COLUMNS)
            base[0] = section
            for key, at in zip(keys, key_positions, strict=True):
                base[at] = _cell(row[key])
            for metric, value in row.items():
                if metric in keys or value is None:  # conversions' revenue: not recorded, no row rather than a 0
                    continue
                for currency, amount in sorted(value.items()) if isinstance(value, dict) else ((None, value),):
                    cells = base.copy()  # a dict: revenue per currency
                    cells[currency_at], cells[metric_at], cells[-1] = _cell(currency), metric, _cell(amount)
                    yield cells


def report_csv(report: Mapping[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(_csv_rows(report))
    return out.getvalue()


def report_filename(report: Mapping[str, Any]) -> str:
    def day(ms: int) -> str:
        moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
        return moment.date().isoformat() if ms % DAY_MS == 0 else str(ms)

    # The last day included: `to` is exclusive.
    last = report["to_ms"] - 1 if report["to_ms"] % DAY_MS else report["to_ms"] - DAY_MS
    app = re.sub(r"[^A-Za-z0-9_-]", "_", report["app_id"])
    return f"apprefer-report-{app}-{day(report['from_ms'])}-to-{day(last)}-by-{report['group_by']}.csv"


def add_routes(routes: web.RouteTableDef, ctx: AdminContext) -> None:
    store = ctx.store

    @routes.get("/admin/v1/apps/{app_id}/report")
    @documented(operation("An app's report: installs, conversions, forwards and SKAN",
                          {200: Answer("the report (format=csv: text/csv, an attachment)", Report,
                                       more_content={"text/csv": {"type": "string"}}),
                           404: "NotFound"}, query=ReportQuery))
    @ctx.guarded
    async def report(request: web.Request) -> web.StreamResponse:
        """GET /admin/v1/apps/{app_id}/report?from=&to=&group_by=day|network|campaign|country&format=json|csv

        - from, to: dates (YYYY-MM-DD, UTC) or epoch milliseconds. `from` is inclusive; a date `to` includes
          that day, an epoch-ms `to` is exclusive. Default: the last 7 days, today included; at most 366 days.
        - group_by (default day): the rows of each section are split by it where the section records that
          dimension; where it does not, `grouped_by` is null and `notes` says why: no campaign is recorded per
          event or forward; the audit log names the network an event was forwarded to, not its attribution (so
          conversions are not split by network); a country is recorded only in SKAN postbacks a network enriched
          (ad-network-country-code). Section keys per group_by (services/admin/stores/reports.py):
            installs     day: day,attributed,network,campaign | network: attributed,network |
                         campaign, country: attributed,network,campaign
            conversions  day: day,event_name | network, campaign, country: event_name
            forwards     day: day,network | network, campaign, country: network
            skan         day: day,ad_network_id,campaign | network: ad_network_id |
                         campaign: ad_network_id,campaign | country: country,ad_network_id
        - format=json (default): {app_id, from_ms, to_ms, from, to, group_by, timezone, installs, conversions,
          forwards, skan}, each section {keys, rows, totals, grouped_by, notes}. Installs are live traffic only
          (sandbox excluded); conversions' revenue is null: no table stores event revenue.
        - format=csv: text/csv, one long table with a `section` column, one row per figure:
          section,day,attributed,network,campaign,country,event_name,currency,metric,value (a key a section
          does not have is empty; skan's network is the ad network id; revenue rows carry their currency), as an
          attachment (Content-Disposition).
          Text starting with = + - @ is prefixed with ' so spreadsheets do not run it.

        400 (field = the parameter) for an unknown parameter or a bad value; 404 for an unknown app.
        """
        try:
            asked, answer_format = parse_report_query(request.match_info["app_id"], request.query, now_ms())
        except InputError as exc:
            return error_response(400, "invalid_request", exc.message, exc.field)
        answer = await ctx.call(store.report, asked)
        if answer_format == "json":
            return json_response(answer)
        # Megabytes for a long range by day: written in a thread, like the queries, so the loop keeps serving.
        response = web.Response(text=await ctx.call(report_csv, answer), content_type="text/csv", charset="utf-8")
        response.headers["Content-Disposition"] = f'attachment; filename="{report_filename(answer)}"'
        return response
