"""An app's report (GET /admin/v1/apps/{app_id}/report): installs, conversions, forwards and SKAN over a time
range, each section one or two GROUP BY queries answered by the database (the rows it returns are already
aggregates: a few per day, network, campaign or status, never one per install or event). Each query reads one
app's time range from an index of migration 0011; on PostgreSQL the six queries run two at a time on connections
of their own (each sees its own snapshot), with the planner settings of `_on_postgres`. The figures, and how the
report scales: docs/benchmarks.md, "App report".

Where each figure comes from, and what it cannot say:

- installs (table installs, one row per device and mode): live traffic only, sandbox (pk_test_) rows excluded.
  An install counts on the day of `installed_at_ms` (a re-attribution moves the row there). `attributed`
  false is organic. Reinstalls: the table keeps only a device's latest reinstall (`last_install_event_id`,
  `last_install_at_ms`, the install row's attribution kept), so the figure is the devices whose latest reinstall
  falls in the range, counted on its day; earlier reinstalls of the same device were overwritten.
- conversions (table audit_log): apprefer stores no table of raw events; an event is known from the audit
  rows the fanout and the forwarders write for each enabled integration (an app without integrations has none).
  A conversion is a distinct event id per event name, counted on the day of its first audit row in the range;
  sandbox events (status `sandbox`) and the SKAN forwards (their ids are postback ids) are left out.
  `delivered`: those delivered to at least one network. Revenue: no table holds an event's revenue (it travels in
  the Kafka records only; audit_log has no revenue column), so it is answered null, with `revenue_recorded` false.
- forwards (audit_log): audit rows per network and status, SKAN forwards included. Each attempt that will be
  retried is a `retrying` row: the statuses count outcomes, not events.
- skan (skan_postbacks): the app's postbacks per ad network id and campaign (`source-identifier`, SKAN 4, else
  `campaign-id`), counted on the day received: postbacks, those counted as installs, the decoded install and
  redownload records, event occurrences (each event record's `count`) and the decoded revenue (each event
  record's `revenue`, the midpoint of its range) per currency.

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
from functools import lru_cache
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    Integer,
    String,
    and_,
    case,
    cast,
    column,
    func,
    literal_column,
    select,
    text,
    true,
)
from sqlalchemy.orm import Session

from services.admin.stores.base import StoreBase
from shared.db.models import AuditEntry, Install, SkanPostback
from shared.forwarding.audit import STATUSES
from shared.networks.registry import registry
from shared.networks.spec import Feed

GroupBy = Literal["day", "network", "campaign", "country"]
GROUP_BYS: tuple[GroupBy, ...] = ("day", "network", "campaign", "country")
DAY_MS = 86_400_000
REPORT_WORK_MEM = "64MB"  # per hash aggregate of a report's queries (PostgreSQL's default 4MB spills to disk)
REPORT_RANDOM_PAGE_COST = "1.1"  # PostgreSQL's advice for SSDs and cached data (its default 4.0: spinning disks)
REPORT_PARALLEL = 2  # PostgreSQL: connections a report uses at once (of the pool's 5 + 5 overflow)
FORWARD_STATUSES = ("delivered", "rejected", "dead_lettered", "sandbox", "skipped", "retrying")
assert set(FORWARD_STATUSES) == set(STATUSES), "a new audit status: add it to the report"

# The key columns of each section's rows, per group_by (the route's docstring shows them too).
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
                    "integration), counted on the day of their first audit row in the range; sandbox events and "
                    "SKAN forwards excluded; delivered: to at least one network",
                    "revenue is not recorded: no table stores an event's revenue (revenue null)"],
    "forwards": ["audit rows per network and status, SKAN forwards included: every retried attempt is a "
                 "retrying row"],
    "skan": ["campaign: source-identifier (SKAN 4), else campaign-id; country: the network's "
             "ad-network-country-code enrichment, null when not sent",
             "revenue: the decoded event records' revenue (midpoint of each range), per currency"],
}


@dataclass(frozen=True, slots=True)
class ReportRequest:
    app_id: str
    from_ms: int  # inclusive
    to_ms: int  # exclusive
    group_by: GroupBy = "day"


@lru_cache(maxsize=4096)
def day_of(day_number: int) -> str:
    return datetime.fromtimestamp(day_number * DAY_MS / 1000, tz=UTC).date().isoformat()


def _day(column: Any) -> ColumnElement[Any]:
    """The UTC day number of an epoch-ms column: integer division on both dialects (no bound parameter, so the
    SELECT and GROUP BY expressions are the same to PostgreSQL)."""
    return (column // literal_column(str(DAY_MS), BigInteger)).label("day")


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.sum(case((condition, 1), else_=0))


def _skan_networks() -> list[str]:
    return sorted(spec.name for spec in registry().fed_by(Feed.SKAN))


Query = Callable[[Session, ReportRequest], list[Any]]


class ReportsStore(StoreBase):
    def report(self, request: ReportRequest) -> dict[str, Any]:
        queries: dict[str, Query] = {  # the longest first
            "conversions": _conversion_counts, "forwards": _forward_counts, "skan_records": _skan_record_counts,
            "installs": _install_counts, "skan_postbacks": _skan_postback_counts, "reinstalls": _reinstall_counts}
        with self._sessions() as session:
            self._require_app(session, request.app_id)
            postgres = session.get_bind().dialect.name == "postgresql"
            if not postgres:  # one file, one writer at a time: the queries one after the other
                found = {name: query(session, request) for name, query in queries.items()}
        if postgres:
            # The queries are independent: on connections of their own, REPORT_PARALLEL at once (each sees its own
            # snapshot; the consumers write these tables apart anyway).
            with ThreadPoolExecutor(REPORT_PARALLEL, thread_name_prefix="report") as pool:
                futures = {name: pool.submit(self._on_postgres, query, request) for name, query in queries.items()}
                found = {name: future.result() for name, future in futures.items()}
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

    def _on_postgres(self, query: Query, request: ReportRequest) -> list[Any]:
        with self._sessions() as session:
            # For this transaction only, in one round trip: no JIT (compiling costs more than these queries take,
            # and the planner's estimate of a JSON expansion would switch it on); hash aggregates kept in memory;
            # pages costed as the cached/SSD reads they are, so that the planner takes the report indexes'
            # index-only scans (migration 0011) over a time index plus the table (at the default 4.0 it does not:
            # a third less work for the same answer, measured in docs/benchmarks.md).
            session.execute(text("SELECT set_config('jit', 'off', true), set_config('work_mem', :work_mem, true), "
                                 "set_config('random_page_cost', :page_cost, true)"),
                            {"work_mem": REPORT_WORK_MEM, "page_cost": REPORT_RANDOM_PAGE_COST})
            return query(session, request)


# ------------------------------------------------------------------------------------------------ the queries
# Each one GROUP BY, the key columns selected first in the section's key order (see _key_reader).


def _install_columns(keys: Sequence[str], day_column: Any) -> list[ColumnElement[Any]]:
    available: dict[str, ColumnElement[Any]] = {
        "day": _day(day_column), "attributed": Install.attributed.label("attributed"),
        "network": Install.network.label("network"), "campaign": Install.campaign.label("campaign")}
    return [available[k] for k in keys]


def _install_counts(session: Session, request: ReportRequest) -> list[Any]:
    chosen = _install_columns(INSTALL_KEYS[request.group_by], Install.installed_at_ms)
    return list(session.execute(
        select(*chosen, func.count().label("n"))
        .where(Install.app_id == request.app_id, ~Install.sandbox,
               Install.installed_at_ms >= request.from_ms, Install.installed_at_ms < request.to_ms)
        .group_by(*chosen)))


def _reinstall_counts(session: Session, request: ReportRequest) -> list[Any]:
    # Live rows whose latest install event is not the one that set the row, counted on that event's day: the
    # partial index ix_installs_report_reinstalls (its predicate is this WHERE as each dialect renders it).
    chosen = _install_columns(INSTALL_KEYS[request.group_by], Install.last_install_at_ms)
    return list(session.execute(
        select(*chosen, func.count().label("n"))
        .where(Install.app_id == request.app_id, ~Install.sandbox, Install.last_install_event_id != Install.event_id,
               Install.last_install_at_ms >= request.from_ms, Install.last_install_at_ms < request.to_ms)
        .group_by(*chosen)))


def _conversion_counts(session: Session, request: ReportRequest) -> list[Any]:
    by_day = "day" in CONVERSION_KEYS[request.group_by]
    # One row per event: its name (a dead letter's replay audits it without one), when it was first audited in the
    # range (by day only), whether it was delivered to at least one network.
    first = [func.min(AuditEntry.recorded_at_ms).label("first_ms")] if by_day else []
    events = (
        select(AuditEntry.event_id, func.max(AuditEntry.event_name).label("event_name"), *first,
               func.max(case((AuditEntry.status == "delivered", 1), else_=0)).label("delivered"))
        .where(AuditEntry.app_id == request.app_id,
               AuditEntry.recorded_at_ms >= request.from_ms, AuditEntry.recorded_at_ms < request.to_ms,
               AuditEntry.status != "sandbox", AuditEntry.network.not_in(_skan_networks()))
        .group_by(AuditEntry.event_id)
        .subquery("events"))
    chosen = [_day(events.c.first_ms)] if by_day else []
    chosen.append(events.c.event_name.label("event_name"))
    return list(session.execute(
        select(*chosen, func.count().label("events"), func.sum(events.c.delivered).label("delivered"))
        .group_by(*chosen)))


def _forward_counts(session: Session, request: ReportRequest) -> list[Any]:
    available: dict[str, ColumnElement[Any]] = {
        "day": _day(AuditEntry.recorded_at_ms), "network": AuditEntry.network.label("network")}
    chosen = [*(available[k] for k in FORWARD_KEYS[request.group_by]), AuditEntry.status.label("status")]
    return list(session.execute(
        select(*chosen, func.count().label("n"))
        .where(AuditEntry.app_id == request.app_id,
               AuditEntry.recorded_at_ms >= request.from_ms, AuditEntry.recorded_at_ms < request.to_ms)
        .group_by(*chosen)))


def _skan_columns(request: ReportRequest) -> tuple[list[ColumnElement[Any]], ColumnElement[bool]]:
    postback = SkanPostback.postback
    available: dict[str, ColumnElement[Any]] = {
        "day": _day(SkanPostback.received_at_ms),
        "ad_network_id": SkanPostback.ad_network_id.label("ad_network_id"),
        "campaign": func.coalesce(cast(postback["source-identifier"].as_string(), String),
                                  cast(postback["campaign-id"].as_string(), String)).label("campaign"),
        "country": cast(postback["ad-network-country-code"].as_string(), String).label("country"),
    }
    in_range = and_(SkanPostback.app_id == request.app_id, SkanPostback.received_at_ms >= request.from_ms,
                    SkanPostback.received_at_ms < request.to_ms)
    return [available[k] for k in SKAN_KEYS[request.group_by]], in_range


def _skan_postback_counts(session: Session, request: ReportRequest) -> list[Any]:
    chosen, in_range = _skan_columns(request)
    return list(session.execute(
        select(*chosen, func.count().label("postbacks"),
               _count_if(SkanPostback.counted_as_install.is_(True)).label("counted"))
        .where(in_range).group_by(*chosen)))


def _skan_record_counts(session: Session, request: ReportRequest) -> list[Any]:
    """The decoded records of the postbacks counted as installs, per key, kind and currency: records, their
    occurrences (sum of `count`) and revenue. The keys are computed once per postback (the subquery), then the
    records array expanded: json_to_recordset on PostgreSQL (one parse per postback, typed fields; the column
    is `json`), json_each on SQLite."""
    chosen, in_range = _skan_columns(request)
    postbacks = (select(*chosen, SkanPostback.records.label("records"))
                 .where(in_range, SkanPostback.counted_as_install.is_(True)))
    kind: ColumnElement[Any]
    currency: ColumnElement[Any]
    count: ColumnElement[Any]
    revenue: ColumnElement[Any]
    if session.get_bind().dialect.name == "postgresql":
        # OFFSET 0 keeps PostgreSQL from pulling the subquery up, which would compute the keys (JSON look-ups in
        # the postback) once per record instead of once per postback.
        keyed = postbacks.offset(0).subquery("postback")
        record: Any = func.json_to_recordset(keyed.c.records).table_valued(
            column("kind", String), column("count", Integer), column("revenue", Float), column("currency", String),
        ).render_derived(name="record", with_types=True)
        kind, currency, count, revenue = record.c.kind, record.c.currency, record.c.count, record.c.revenue
    else:
        keyed = postbacks.subquery("postback")
        record = func.json_each(keyed.c.records).table_valued("value").alias("record")

        def field(name: str) -> ColumnElement[Any]:
            return func.json_extract(record.c.value, literal_column(f"'$.{name}'"))

        kind, currency = field("kind"), field("currency")
        count, revenue = cast(field("count"), Integer), cast(field("revenue"), Float)
    outer = [keyed.c[c.name] for c in chosen]
    return list(session.execute(
        select(*outer, kind.label("kind"), currency.label("currency"), func.count().label("records"),
               func.sum(count).label("occurrences"), func.sum(revenue).label("revenue"))
        .select_from(keyed).join(record, true())
        .group_by(*outer, kind, currency)))


# ------------------------------------------------------------------------------------------- the sections
# Built from the queries' rows (aggregates already: a few per key), keyed and sorted for the answer.


def _installs(keys: Sequence[str], installs: list[Any], reinstalls: list[Any]) -> dict[str, Any]:
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    key_of = _key_reader(keys)
    for found, figure in ((installs, "installs"), (reinstalls, "reinstalls")):
        for r in found:
            values = key_of(r)
            row = rows.get(values)
            if row is None:
                row = rows[values] = {**dict(zip(keys, values, strict=True)), "installs": 0, "reinstalls": 0}
            row[figure] += r.n
    ordered = _sorted(rows.values(), keys)
    attributed = sum(r["installs"] for r in ordered if r["attributed"])
    total = sum(r["installs"] for r in ordered)
    return {"keys": list(keys), "rows": ordered, "totals": {
        "installs": total, "attributed": attributed, "organic": total - attributed,
        "reinstalls": sum(r["reinstalls"] for r in ordered)}}


def _conversions(keys: Sequence[str], found: list[Any]) -> dict[str, Any]:
    key_of = _key_reader(keys)
    rows = _sorted(({**dict(zip(keys, key_of(r), strict=True)), "events": int(r.events),
                     "delivered": int(r.delivered or 0), "revenue": None} for r in found), keys)
    totals = {"events": sum(r["events"] for r in rows), "delivered": sum(r["delivered"] for r in rows),
              "revenue": None}
    return {"keys": list(keys), "rows": rows, "totals": totals, "revenue_recorded": False}


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
