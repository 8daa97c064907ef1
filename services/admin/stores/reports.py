"""An app's report (GET /admin/v1/apps/{app_id}/report): installs, conversions, forwards and SKAN over a time
range. What each figure counts, and what it cannot say: shared/reports/figures.py.

A range is answered in two parts (shared/reports/rollups.py `plan`): its whole days that are rolled up (closed,
rolled by the roller, not marked stale since) from the rollup tables, a few rows per day, and the rest (today,
a partial first or last day, a day not rolled yet) from the raw rows, with the same queries the roller rolls
with; the parts are summed here. So a long range costs about what its open day costs. On PostgreSQL the queries
run REPORT_PARALLEL at once on connections of their own, with the planner settings of `tune_for_reports`. The
figures, and how the report scales: docs/benchmarks.md, "App report".

group_by applies where a section records the dimension; elsewhere the section keeps its other keys and says
why in `grouped_by` (null) and `notes` (NOT_GROUPED). Country: no install, event or forward records one (the SDK's
locale is not stored, nor an IP); a postback enriched by its network may carry `ad-network-country-code`, so
group_by=country groups the SKAN section by it (null: not sent). Network, for conversions: the audit log records
where an event was forwarded, not its attribution, so conversions are not split by network.

Times are UTC; a day is [00:00, 24:00) UTC. The range is [from_ms, to_ms).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache, partial
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.admin.stores.base import StoreBase
from shared.db.models import ReportRollupState, ReportStaleDay
from shared.forwarding.audit import STATUSES
from shared.reports import figures, rollups
from shared.reports.figures import DAY_MS, Span, tune_for_reports
from shared.reports.rollups import DayRun, Plan

GroupBy = Literal["day", "network", "campaign", "country"]
GROUP_BYS: tuple[GroupBy, ...] = ("day", "network", "campaign", "country")
REPORT_PARALLEL = 2  # PostgreSQL: connections a report uses at once (of the pool's 5 + 5 overflow)
FORWARD_STATUSES = ("delivered", "rejected", "dead_lettered", "sandbox", "skipped", "retrying")
assert set(FORWARD_STATUSES) == set(STATUSES), "a new audit status: add it to the report"

# The key columns of each section's rows, per group_by (the route's docstring shows them too). Each is a subset
# of the section's figures.ROLLUP_KEYS, so any of them sums rollup rows.
INSTALL_KEYS: dict[str, tuple[str, ...]] = {
    "day": ("day", "attributed", "network", "campaign"),
    "network": ("attributed", "network"),
    "campaign": ("attributed", "network", "campaign"),
    "country": ("attributed", "network", "campaign"),
}
CONVERSION_KEYS: dict[str, tuple[str, ...]] = {
    "day": ("day", "event_name"),
    "network": ("event_name",),
    "campaign": ("event_name",),
    "country": ("event_name",),
}
FORWARD_KEYS: dict[str, tuple[str, ...]] = {
    "day": ("day", "network"),
    "network": ("network",),
    "campaign": ("network",),
    "country": ("network",),
}
SKAN_KEYS: dict[str, tuple[str, ...]] = {
    "day": ("day", "ad_network_id", "campaign"),
    "network": ("ad_network_id",),
    "campaign": ("ad_network_id", "campaign"),
    "country": ("country", "ad_network_id"),
}
_NO_COUNTRY = "no country is recorded for installs, events or forwards (only SKAN postbacks may carry one)"
# (section, group_by) the section cannot be grouped by, and why: its rows keep their other keys, grouped_by null.
NOT_GROUPED: dict[tuple[str, str], str] = {
    ("installs", "country"): _NO_COUNTRY,
    ("conversions", "network"): "the audit log records the network an event was forwarded to, not the one it is "
                                "attributed to (forwards has each network's outcomes)",
    ("conversions", "campaign"): "no campaign is recorded per event",
    ("conversions", "country"): _NO_COUNTRY,
    ("forwards", "campaign"): "no campaign is recorded per forward",
    ("forwards", "country"): _NO_COUNTRY,
}
NOTES = {
    "installs": ["live traffic only: sandbox (pk_test_) installs are excluded",
                 "reinstalls: devices whose latest reinstall falls in the range (only the latest is stored), "
                 "counted on its day, with the install's attribution"],
    "conversions": ["distinct events per event name, from the audit log (events handled for at least one enabled "
                    "integration), each counted on the day of its first audit row; delivered: each event counted on "
                    "the day of its first delivery to any network; sandbox events and SKAN forwards excluded",
                    "revenue is not recorded: no table stores an event's revenue (revenue null)"],
    "forwards": ["audit rows per network and status, SKAN forwards included: every retried attempt is a "
                 "retrying row"],
    "skan": ["campaign: source-identifier (SKAN 4), else campaign-id; country: the network's "
             "ad-network-country-code enrichment, null when not sent",
             "revenue: the decoded event records' revenue (midpoint of each range), per currency"],
}
SECTION_KEYS = {"installs": INSTALL_KEYS, "conversions": CONVERSION_KEYS, "forwards": FORWARD_KEYS,
                "skan": SKAN_KEYS}


@dataclass(frozen=True, slots=True)
class ReportRequest:
    app_id: str
    from_ms: int  # inclusive
    to_ms: int  # exclusive
    group_by: GroupBy = "day"


@lru_cache(maxsize=4096)
def day_of(day_number: int) -> str:
    return datetime.fromtimestamp(day_number * DAY_MS / 1000, tz=UTC).date().isoformat()


RolledQuery = Callable[[Session, str, Sequence[DayRun], Sequence[str]], list[Any]]
# Per source table: (figure, section, the raw query, the rollup query standing for it). Installs and reinstalls
# are one rollup read (both figures per row); its rows are taken as both.
FIGURES: dict[str, list[tuple[str, str, figures.Query, RolledQuery | None]]] = {
    "installs": [("installs", "installs", figures.install_counts, rollups.rolled_installs),
                 ("reinstalls", "installs", figures.reinstall_counts, None)],
    "audit_events": [("conversions", "conversions", figures.conversion_counts, rollups.rolled_conversions)],
    "audit_log": [("forwards", "forwards", figures.forward_counts, rollups.rolled_forwards)],
    "skan_postbacks": [("skan_postbacks", "skan", figures.skan_postback_counts, rollups.rolled_skan_postbacks),
                       ("skan_records", "skan", figures.skan_record_counts, rollups.rolled_skan_records)],
}
Task = Callable[[Session], tuple[str, list[Any]]]


def plans(request: ReportRequest, state: tuple[int, int] | None, stale: Iterable[Any]) -> dict[str, Plan]:
    """Per source table, the range's rolled runs and raw spans: a day is rolled when it lies in the app's rolled
    span and no mark of the source names it."""
    marked: dict[str, set[int]] = {source: set() for source in FIGURES}
    for day, source in stale:
        marked.setdefault(source, set()).add(day)
    found = {}
    for source, days in marked.items():
        found[source] = (Plan([], [(request.from_ms, request.to_ms)]) if state is None
                         else rollups.plan(request.from_ms, request.to_ms, _rolled_day(*state, days)))
    return found


def _rolled_day(first: int, through: int, stale: set[int]) -> Callable[[int], bool]:
    return lambda day: first <= day <= through and day not in stale


class ReportsStore(StoreBase):
    def report(self, request: ReportRequest) -> dict[str, Any]:
        with self._sessions() as session:
            self._require_app(session, request.app_id)
            postgres = session.get_bind().dialect.name == "postgresql"
            state_row = session.get(ReportRollupState, request.app_id)
            state = (state_row.first_day, state_row.through_day) if state_row is not None else None
            stale = session.execute(select(ReportStaleDay.day, ReportStaleDay.source).where(
                ReportStaleDay.app_id == request.app_id, ReportStaleDay.day >= request.from_ms // DAY_MS,
                ReportStaleDay.day <= (request.to_ms - 1) // DAY_MS)).all()
            tasks = _tasks(request, plans(request, state, stale))
            if not postgres:  # one file, one writer at a time: the queries one after the other
                done = [task(session) for task in tasks]
        if postgres:
            # The queries are independent: on connections of their own, REPORT_PARALLEL at once (each sees its own
            # snapshot; the consumers write these tables apart anyway).
            with ThreadPoolExecutor(REPORT_PARALLEL, thread_name_prefix="report") as pool:
                done = list(pool.map(self._on_postgres, tasks))
        found: dict[str, list[Any]] = {name: [] for source in FIGURES.values() for name, *_ in source}
        for name, rows in done:
            found[name].extend(rows)
        group_by = request.group_by
        sections = {
            "installs": _installs(INSTALL_KEYS[group_by], found["installs"], found["reinstalls"]),
            "conversions": _conversions(CONVERSION_KEYS[group_by], found["conversions"]),
            "forwards": _forwards(FORWARD_KEYS[group_by], found["forwards"]),
            "skan": _skan(SKAN_KEYS[group_by], found["skan_postbacks"], found["skan_records"]),
        }
        for name, section in sections.items():
            why_not = NOT_GROUPED.get((name, group_by))
            section["grouped_by"] = group_by if why_not is None else None
            section["notes"] = NOTES[name] + ([] if why_not is None else [
                f"group_by={group_by} does not apply: {why_not}"])
        return {
            "app_id": request.app_id,
            "from_ms": request.from_ms,
            "to_ms": request.to_ms,
            "from": _iso(request.from_ms),
            "to": _iso(request.to_ms),
            "group_by": group_by,
            "timezone": "UTC",
            **sections,
        }

    def _on_postgres(self, task: Task) -> tuple[str, list[Any]]:
        with self._sessions() as session:
            tune_for_reports(session)
            return task(session)


def _tasks(request: ReportRequest, found: dict[str, Plan]) -> list[Task]:
    """One query per figure and part of the range: the rollup read of its runs, a raw query per raw span. The
    raw ones first: they take longest."""
    raw: list[Task] = []
    rolled: list[Task] = []
    for source, source_figures in FIGURES.items():
        planned = found[source]
        for name, section, raw_query, rolled_query in source_figures:
            keys = SECTION_KEYS[section][request.group_by]
            for from_ms, to_ms in planned.spans:
                raw.append(partial(_from_rows, name, raw_query, Span(request.app_id, from_ms, to_ms), keys))
            if planned.runs and rolled_query is not None:
                rolled.append(partial(_from_rollups, name, rolled_query, request.app_id, planned.runs, keys))
    return raw + rolled


def _from_rows(name: str, query: figures.Query, span: Span, keys: Sequence[str], session: Session
               ) -> tuple[str, list[Any]]:
    return name, query(session, span, keys)


def _from_rollups(name: str, query: RolledQuery, app_id: str, runs: Sequence[DayRun], keys: Sequence[str],
                  session: Session) -> tuple[str, list[Any]]:
    return name, query(session, app_id, runs, keys)


# ------------------------------------------------------------------------------------------- the sections
# Built from the queries' rows (aggregates already: a few per key), keyed and sorted for the answer.


def _installs(keys: Sequence[str], installs: list[Any], reinstalls: list[Any]) -> dict[str, Any]:
    """installs: the raw query's rows (n) and the rollup read's (installs, reinstalls); reinstalls: raw (n)."""
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    key_of = _key_reader(keys)

    def row_of(found: Any) -> dict[str, Any]:
        values = key_of(found)
        row = rows.get(values)
        if row is None:
            row = rows[values] = {**dict(zip(keys, values, strict=True)), "installs": 0, "reinstalls": 0}
        return row

    for r in installs:
        row = row_of(r)
        if "n" in r._fields:
            row["installs"] += r.n
        else:
            row["installs"] += int(r.installs)
            row["reinstalls"] += int(r.reinstalls)
    for r in reinstalls:
        row_of(r)["reinstalls"] += r.n
    ordered = _sorted(rows.values(), keys)
    attributed = sum(r["installs"] for r in ordered if r["attributed"])
    total = sum(r["installs"] for r in ordered)
    return {"keys": list(keys), "rows": ordered, "totals": {
        "installs": total, "attributed": attributed, "organic": total - attributed,
        "reinstalls": sum(r["reinstalls"] for r in ordered)}}


def _conversions(keys: Sequence[str], found: list[Any]) -> dict[str, Any]:
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    key_of = _key_reader(keys)
    for r in found:
        values = key_of(r)
        row = rows.get(values)
        if row is None:
            row = rows[values] = {**dict(zip(keys, values, strict=True)), "events": 0, "delivered": 0,
                                  "revenue": None}
        row["events"] += int(r.events or 0)
        row["delivered"] += int(r.delivered or 0)
    ordered = _sorted(rows.values(), keys)
    totals = {"events": sum(r["events"] for r in ordered), "delivered": sum(r["delivered"] for r in ordered),
              "revenue": None}
    return {"keys": list(keys), "rows": ordered, "totals": totals, "revenue_recorded": False}


def _forwards(keys: Sequence[str], found: list[Any]) -> dict[str, Any]:
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    key_of = _key_reader(keys)
    for r in found:  # (key, status) counts -> one row per key, a column per status
        values = key_of(r)
        row = rows.get(values)
        if row is None:
            row = rows[values] = {**dict(zip(keys, values, strict=True)), **dict.fromkeys(FORWARD_STATUSES, 0),
                                  "total": 0}
        if r.status in FORWARD_STATUSES:
            row[r.status] += r.n
        row["total"] += r.n
    ordered = _sorted(rows.values(), keys)
    totals = {name: sum(r[name] for r in ordered) for name in (*FORWARD_STATUSES, "total")}
    return {"keys": list(keys), "rows": ordered, "totals": totals}


def _skan(keys: Sequence[str], postbacks: list[Any], records: list[Any]) -> dict[str, Any]:
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    key_of = _key_reader(keys)

    def row_of(found: Any) -> dict[str, Any]:
        values = key_of(found)
        row = rows.get(values)
        if row is None:
            row = rows[values] = {**dict(zip(keys, values, strict=True)), "postbacks": 0, "counted_as_install": 0,
                                  "installs": 0, "redownloads": 0, "events": 0, "revenue": {}}
        return row

    for found in postbacks:
        row = row_of(found)
        row["postbacks"] += found.postbacks
        row["counted_as_install"] += int(found.counted or 0)
    for found in records:
        row = row_of(found)
        if found.kind == "install":
            row["installs"] += found.records
        elif found.kind == "redownload":
            row["redownloads"] += found.records
        elif found.kind == "event":
            row["events"] += int(found.occurrences or 0)
            if found.revenue is not None and found.currency is not None:
                row["revenue"][found.currency] = round(
                    row["revenue"].get(found.currency, 0.0) + float(found.revenue), 6)
    ordered = _sorted(rows.values(), keys)
    totals: dict[str, Any] = {name: sum(r[name] for r in ordered) for name in (
        "postbacks", "counted_as_install", "installs", "redownloads", "events")}
    revenue: dict[str, float] = {}
    for row in ordered:
        for code, amount in row["revenue"].items():
            revenue[code] = round(revenue.get(code, 0.0) + amount, 6)
    totals["revenue"] = revenue
    return {"keys": list(keys), "rows": ordered, "totals": totals}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _key_reader(keys: Sequence[str]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """The JSON values of a result row's key columns (every query selects them first, in `keys` order): the day
    number as a date, `attributed` as a boolean, the others as text. Unrolled: it runs once per result row."""
    c = [(lambda v: day_of(int(v))) if k == "day" else bool if k == "attributed" else _text for k in keys]
    match len(c):
        case 1:
            return lambda row: (c[0](row[0]),)
        case 2:
            return lambda row: (c[0](row[0]), c[1](row[1]))
        case 3:
            return lambda row: (c[0](row[0]), c[1](row[1]), c[2](row[2]))
        case 4:
            return lambda row: (c[0](row[0]), c[1](row[1]), c[2](row[2]), c[3](row[3]))
        case _:
            return lambda row: tuple(convert(value) for convert, value in zip(c, row, strict=False))


def _sort_text(value: str | bool | None) -> str | bool:
    """Nulls first, then the text in order (booleans as they are: False first)."""
    if value is None:
        return ""
    return value if isinstance(value, bool) else "\x01" + value


def _sorted(rows: Iterable[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """By the keys, nulls first (organic installs lead their day). Unrolled, as _key_reader."""
    t, k = _sort_text, keys
    match len(k):
        case 1:
            return sorted(rows, key=lambda row: t(row[k[0]]))
        case 2:
            return sorted(rows, key=lambda row: (t(row[k[0]]), t(row[k[1]])))
        case 3:
            return sorted(rows, key=lambda row: (t(row[k[0]]), t(row[k[1]]), t(row[k[2]])))
        case 4:
            return sorted(rows, key=lambda row: (t(row[k[0]]), t(row[k[1]]), t(row[k[2]]), t(row[k[3]])))
        case _:
            return sorted(rows, key=lambda row: tuple(t(row[name]) for name in k))


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")
