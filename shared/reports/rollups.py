"""The rollup tables (migration 0014): each closed day's figures of an app at the finest keys (figures.ROLLUP_KEYS),
written by `roll_day` from the raw rows and summed by the `rolled_*` reads over runs of whole days. `plan` splits
a report's range into the runs of days answered from rollups and the spans answered from raw rows."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, delete, func, insert, or_, select
from sqlalchemy.orm import Session

from shared.db.models import (
    Base,
    ReportConversionDay,
    ReportForwardDay,
    ReportInstallDay,
    ReportSkanDay,
    ReportSkanRecordDay,
)
from shared.reports import figures
from shared.reports.figures import DAY_MS, ROLLUP_KEYS, Span
from shared.reports.stale import SOURCES

DayRun = tuple[int, int]  # [first day, end day) of day numbers
MAX_RAW_SPANS = 4  # more than that many raw spans in one range (many stale days): the whole range from raw rows


@dataclass(frozen=True, slots=True)
class Plan:
    runs: list[DayRun]  # answered from rollups
    spans: list[tuple[int, int]]  # [from_ms, to_ms) answered from raw rows


def plan(from_ms: int, to_ms: int, rolled: Callable[[int], bool]) -> Plan:
    """The whole days of [from_ms, to_ms) that `rolled` says are rolled up, as runs, and the rest as raw spans."""
    runs: list[DayRun] = []
    spans: list[tuple[int, int]] = []
    raw_from: int | None = None
    day = from_ms // DAY_MS
    while day * DAY_MS < to_ms:
        start, end = day * DAY_MS, (day + 1) * DAY_MS
        if start >= from_ms and end <= to_ms and rolled(day):
            if raw_from is not None:
                spans.append((raw_from, start))
                raw_from = None
            if runs and runs[-1][1] == day:
                runs[-1] = (runs[-1][0], day + 1)
            else:
                runs.append((day, day + 1))
        elif raw_from is None:
            raw_from = max(start, from_ms)
        day += 1
    if raw_from is not None:
        spans.append((raw_from, to_ms))
    if len(spans) > MAX_RAW_SPANS:
        return Plan([], [(from_ms, to_ms)])
    return Plan(runs, spans)


# ------------------------------------------------------------------------------------------------- reading


def _rolled(session: Session, model: type[Base], app_id: str, runs: Sequence[DayRun], keys: Sequence[str],
            more_keys: Sequence[str], sums: dict[str, str]) -> list[Any]:
    """keys..., more_keys..., then each figure summed under its name: the shape of the raw query it stands for."""
    table = _table(model)
    chosen: list[ColumnElement[Any]] = [table.c[k].label(k) for k in (*keys, *more_keys)]
    in_runs = or_(*(and_(table.c.day >= first, table.c.day < end) for first, end in runs))
    return list(session.execute(
        select(*chosen, *(func.sum(table.c[column]).label(name) for name, column in sums.items()))
        .where(table.c.app_id == app_id, in_runs)
        .group_by(*chosen)))


def rolled_installs(session: Session, app_id: str, runs: Sequence[DayRun], keys: Sequence[str]) -> list[Any]:
    """keys..., installs, reinstalls"""
    return _rolled(session, ReportInstallDay, app_id, runs, keys, (),
                   {"installs": "installs", "reinstalls": "reinstalls"})


def rolled_conversions(session: Session, app_id: str, runs: Sequence[DayRun], keys: Sequence[str]) -> list[Any]:
    """keys..., events, delivered (as figures.conversion_counts)"""
    return _rolled(session, ReportConversionDay, app_id, runs, keys, (),
                   {"events": "events", "delivered": "delivered"})


def rolled_forwards(session: Session, app_id: str, runs: Sequence[DayRun], keys: Sequence[str]) -> list[Any]:
    """keys..., status, n (as figures.forward_counts)"""
    return _rolled(session, ReportForwardDay, app_id, runs, keys, ("status",), {"n": "forwards"})


def rolled_skan_postbacks(session: Session, app_id: str, runs: Sequence[DayRun], keys: Sequence[str]) -> list[Any]:
    """keys..., postbacks, counted (as figures.skan_postback_counts)"""
    return _rolled(session, ReportSkanDay, app_id, runs, keys, (),
                   {"postbacks": "postbacks", "counted": "counted_as_install"})


def rolled_skan_records(session: Session, app_id: str, runs: Sequence[DayRun], keys: Sequence[str]) -> list[Any]:
    """keys..., kind, currency, records, occurrences, revenue (as figures.skan_record_counts)"""
    return _rolled(session, ReportSkanRecordDay, app_id, runs, keys, ("kind", "currency"),
                   {"records": "records", "occurrences": "occurrences", "revenue": "revenue"})


# ------------------------------------------------------------------------------------------------- writing

ROLLUP_TABLES: dict[str, tuple[type[Base], ...]] = {
    "installs": (ReportInstallDay,),
    "conversions": (ReportConversionDay,),
    "forwards": (ReportForwardDay,),
    "skan": (ReportSkanDay, ReportSkanRecordDay),
}


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


def delete_before(session: Session, app_id: str, day: int) -> None:
    """The app's rollup rows of the days before `day`."""
    for model in (model for models in ROLLUP_TABLES.values() for model in models):
        table = _table(model)
        session.execute(delete(table).where(table.c.app_id == app_id, table.c.day < day))


def _keyed(keys: Sequence[str], row: Any) -> dict[str, Any]:
    return {k: row[i] for i, k in enumerate(keys)}


def _install_rows(session: Session, span: Span) -> dict[type[Base], list[dict[str, Any]]]:
    keys = ROLLUP_KEYS["installs"]
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for found, figure in ((figures.install_counts(session, span, keys), "installs"),
                          (figures.reinstall_counts(session, span, keys), "reinstalls")):
        for r in found:
            row = rows.setdefault(tuple(r[:len(keys)]), {**_keyed(keys, r), "installs": 0, "reinstalls": 0})
            row[figure] += r.n
    return {ReportInstallDay: list(rows.values())}


def _conversion_rows(session: Session, span: Span) -> dict[type[Base], list[dict[str, Any]]]:
    keys = ROLLUP_KEYS["conversions"]
    return {ReportConversionDay: [{**_keyed(keys, r), "events": int(r.events), "delivered": int(r.delivered)}
                                  for r in figures.conversion_counts(session, span, keys)]}


def _forward_rows(session: Session, span: Span) -> dict[type[Base], list[dict[str, Any]]]:
    keys = ROLLUP_KEYS["forwards"]
    return {ReportForwardDay: [{**_keyed(keys, r), "status": r.status, "forwards": r.n}
                               for r in figures.forward_counts(session, span, keys)]}


def _skan_rows(session: Session, span: Span) -> dict[type[Base], list[dict[str, Any]]]:
    keys = ROLLUP_KEYS["skan"]
    return {
        ReportSkanDay: [{**_keyed(keys, r), "postbacks": r.postbacks, "counted_as_install": int(r.counted or 0)}
                        for r in figures.skan_postback_counts(session, span, keys)],
        ReportSkanRecordDay: [{**_keyed(keys, r), "kind": r.kind, "currency": r.currency, "records": r.records,
                               "occurrences": int(r.occurrences or 0), "revenue": r.revenue}
                              for r in figures.skan_record_counts(session, span, keys)],
    }


ROLLERS: dict[str, Callable[[Session, Span], dict[type[Base], list[dict[str, Any]]]]] = {
    "installs": _install_rows, "conversions": _conversion_rows, "forwards": _forward_rows, "skan": _skan_rows}


def roll_day(session: Session, app_id: str, day: int, sources: Collection[str]) -> int:
    """Recomputes the app's figures of `day` from the sources' raw rows: their rollup rows of the day deleted
    and written again, in the caller's transaction. Returns the rows written."""
    span = Span(app_id, day * DAY_MS, (day + 1) * DAY_MS)
    written = 0
    for section in (section for source in SOURCES if source in sources for section in SOURCES[source]):
        for model in ROLLUP_TABLES[section]:
            table = _table(model)
            session.execute(delete(table).where(table.c.app_id == app_id, table.c.day == day))
        for model, rows in ROLLERS[section](session, span).items():
            if rows:
                session.execute(insert(model), [{"app_id": app_id, **row, "day": day} for row in rows])
                written += len(rows)
    return written
