"""The report's figures counted from one app's raw rows over a time span, grouped by the keys asked: what a
report reads for the days not rolled up, and what the roller writes for each day it rolls (at ROLLUP_KEYS).

Each query is one GROUP BY (the key columns selected first, in the keys' order) whose rows are aggregates
already: a few per day, network, campaign or status. Each reads one app's span from an index of migration 0011
(conversions: 0014).

- installs (table installs, one row per device and mode): live rows only (sandbox, pk_test_, left out), on the
  day of `installed_at_ms` (a re-attribution moves the row there). Reinstalls: only a device's latest reinstall
  is stored (`last_install_event_id`, `last_install_at_ms`), counted on its day with the install's attribution.
- conversions (audit_events, kept from the audit rows by the audit writer: shared/reports/events.py): an event
  is known from the audit rows written for each enabled integration. It counts once, on the day of its first
  audit row; `delivered` counts it once, on the day of its first delivered row. So a range's figures are the sum
  of its days' (an event retried across midnight is not counted twice). Sandbox rows and the SKAN forwards
  (their ids are postback ids) are left out.
- forwards (audit_log): audit rows per network and status, SKAN forwards included.
- skan (skan_postbacks): postbacks per ad network id, campaign (`source-identifier`, SKAN 4, else
  `campaign-id`) and country (`ad-network-country-code`), on the day received; the decoded records of those
  counted as installs per kind and currency: records, occurrences (each `count`) and revenue.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

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
    literal,
    literal_column,
    select,
    text,
    true,
    union_all,
)
from sqlalchemy.orm import Session

from shared.db.models import AuditEntry, AuditEvent, Install, SkanPostback

DAY_MS = 86_400_000
MAX_RANGE_DAYS = 366  # the longest range a report answers; the roller keeps rollups that far back
# The finest keys of each section: a rollup row holds its day's figures at these, and any group_by is a sum.
ROLLUP_KEYS: dict[str, tuple[str, ...]] = {
    "installs": ("day", "attributed", "network", "campaign"),
    "conversions": ("day", "event_name"),
    "forwards": ("day", "network"),
    "skan": ("day", "ad_network_id", "campaign", "country"),
}
REPORT_WORK_MEM = "64MB"  # per hash aggregate of a report's queries (PostgreSQL's default 4MB spills to disk)
REPORT_RANDOM_PAGE_COST = "1.1"  # PostgreSQL's advice for SSDs and cached data (its default 4.0: spinning disks)


@dataclass(frozen=True, slots=True)
class Span:
    """[from_ms, to_ms) of one app."""

    app_id: str
    from_ms: int
    to_ms: int


Query = Callable[[Session, Span, Sequence[str]], list[Any]]


def tune_for_reports(session: Session) -> None:
    """For this transaction only (PostgreSQL), in one round trip: no JIT (compiling costs more than these queries
    take, and the planner's estimate of a JSON expansion would switch it on); hash aggregates kept in memory;
    pages costed as the cached/SSD reads they are, so that the planner takes the report indexes' index-only scans
    (migration 0011) over a time index plus the table (docs/benchmarks.md measured it)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT set_config('jit', 'off', true), set_config('work_mem', :work_mem, true), "
                             "set_config('random_page_cost', :page_cost, true)"),
                        {"work_mem": REPORT_WORK_MEM, "page_cost": REPORT_RANDOM_PAGE_COST})


def day_number(column: Any) -> ColumnElement[Any]:
    """The UTC day number of an epoch-ms column: integer division on both dialects (no bound parameter, so the
    SELECT and GROUP BY expressions are the same to PostgreSQL)."""
    return (column // literal_column(str(DAY_MS), BigInteger)).label("day")


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.sum(case((condition, 1), else_=0))


def _install_columns(keys: Sequence[str], day_column: Any) -> list[ColumnElement[Any]]:
    available: dict[str, ColumnElement[Any]] = {
        "day": day_number(day_column), "attributed": Install.attributed.label("attributed"),
        "network": Install.network.label("network"), "campaign": Install.campaign.label("campaign")}
    return [available[k] for k in keys]


def install_counts(session: Session, span: Span, keys: Sequence[str]) -> list[Any]:
    """keys..., n"""
    chosen = _install_columns(keys, Install.installed_at_ms)
    return list(session.execute(
        select(*chosen, func.count().label("n"))
        .where(Install.app_id == span.app_id, ~Install.sandbox,
               Install.installed_at_ms >= span.from_ms, Install.installed_at_ms < span.to_ms)
        .group_by(*chosen)))


def reinstall_counts(session: Session, span: Span, keys: Sequence[str]) -> list[Any]:
    """keys..., n. Live rows whose latest install event is not the one that set the row, on that event's day:
    the partial index ix_installs_report_reinstalls (its predicate is this WHERE as each dialect renders it)."""
    chosen = _install_columns(keys, Install.last_install_at_ms)
    return list(session.execute(
        select(*chosen, func.count().label("n"))
        .where(Install.app_id == span.app_id, ~Install.sandbox, Install.last_install_event_id != Install.event_id,
               Install.last_install_at_ms >= span.from_ms, Install.last_install_at_ms < span.to_ms)
        .group_by(*chosen)))


def conversion_counts(session: Session, span: Span, keys: Sequence[str]) -> list[Any]:
    """keys..., events, delivered: the events whose first audit row is in the span, on its day, and those whose
    first delivery is, on its day (audit_events: two index ranges)."""
    by_day = "day" in keys

    def firsts_at(at: Any, is_event: int) -> Any:
        return (select(*([day_number(at)] if by_day else []), AuditEvent.event_name.label("event_name"),
                       literal(is_event).label("is_event"), literal(1 - is_event).label("is_delivery"))
                .where(AuditEvent.app_id == span.app_id, at >= span.from_ms, at < span.to_ms))

    firsts = union_all(firsts_at(AuditEvent.first_ms, 1), firsts_at(AuditEvent.delivered_ms, 0)).subquery("firsts")
    chosen = [firsts.c[k] for k in keys]
    return list(session.execute(
        select(*chosen, func.sum(firsts.c.is_event).label("events"),
               func.sum(firsts.c.is_delivery).label("delivered"))
        .group_by(*chosen)))


def forward_counts(session: Session, span: Span, keys: Sequence[str]) -> list[Any]:
    """keys..., status, n"""
    available: dict[str, ColumnElement[Any]] = {
        "day": day_number(AuditEntry.recorded_at_ms), "network": AuditEntry.network.label("network")}
    chosen = [*(available[k] for k in keys), AuditEntry.status.label("status")]
    return list(session.execute(
        select(*chosen, func.count().label("n"))
        .where(AuditEntry.app_id == span.app_id,
               AuditEntry.recorded_at_ms >= span.from_ms, AuditEntry.recorded_at_ms < span.to_ms)
        .group_by(*chosen)))


def _skan_columns(span: Span, keys: Sequence[str]) -> tuple[list[ColumnElement[Any]], ColumnElement[bool]]:
    postback = SkanPostback.postback
    available: dict[str, ColumnElement[Any]] = {
        "day": day_number(SkanPostback.received_at_ms),
        "ad_network_id": SkanPostback.ad_network_id.label("ad_network_id"),
        "campaign": func.coalesce(cast(postback["source-identifier"].as_string(), String),
                                  cast(postback["campaign-id"].as_string(), String)).label("campaign"),
        "country": cast(postback["ad-network-country-code"].as_string(), String).label("country"),
    }
    in_span = and_(SkanPostback.app_id == span.app_id, SkanPostback.received_at_ms >= span.from_ms,
                   SkanPostback.received_at_ms < span.to_ms)
    return [available[k] for k in keys], in_span


def skan_postback_counts(session: Session, span: Span, keys: Sequence[str]) -> list[Any]:
    """keys..., postbacks, counted"""
    chosen, in_span = _skan_columns(span, keys)
    return list(session.execute(
        select(*chosen, func.count().label("postbacks"),
               _count_if(SkanPostback.counted_as_install.is_(True)).label("counted"))
        .where(in_span).group_by(*chosen)))


def skan_record_counts(session: Session, span: Span, keys: Sequence[str]) -> list[Any]:
    """keys..., kind, currency, records, occurrences, revenue: the decoded records of the postbacks counted as
    installs. The keys are computed once per postback (the subquery), then the records array expanded:
    json_to_recordset on PostgreSQL (one parse per postback, typed fields; the column is `json`), json_each on
    SQLite."""
    chosen, in_span = _skan_columns(span, keys)
    postbacks = (select(*chosen, SkanPostback.records.label("records"))
                 .where(in_span, SkanPostback.counted_as_install.is_(True)))
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
