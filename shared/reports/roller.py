"""The roller: each app's closed days rolled up (shared/reports/rollups.py), and the days writers marked stale
rolled again. The audit service runs it every APPREFER_ROLLUP_INTERVAL_SECONDS beside its consumer (a thread, as
the pruner); `apprefer db rollup` runs it once, with progress.

A day is rolled once it has been over for APPREFER_ROLLUP_SETTLE_SECONDS (writes begun before midnight have
committed by then; later ones mark it stale themselves, shared/reports/stale.py). Rolling is recomputing: each
app-day is one transaction that takes the app's state row first (so two rollers never roll one app at once; on
PostgreSQL under REPEATABLE READ, which the counts and the marks it deletes are read in one snapshot of), deletes
the day's rollup rows, writes them again from the raw rows and deletes the marks it has seen. Marks written after
its snapshot stay, and the day is rolled again next time.

What is rolled, per app (state: the span [first_day, through_day] of rolled days):
- new days: those closed since through_day; an app's first span starts at its oldest row (at most HORIZON_DAYS
  back) or, with no rows yet, at the next day to close;
- stale days in the span: the marked table's sections again;
- stale days before the span (a late event dated then): the span grows down to them, each day rolled;
- never a day older than HORIZON_DAYS (the report's longest range) or a stale one older than its table's
  retention window (rows pruned: rolling it again would lose what the rollup still counts). Rollup rows past
  the horizon are deleted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter
from sqlalchemy import Engine, case, delete, func, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from shared import runtime
from shared.db.models import App, AuditEntry, Install, ReportRollupState, ReportStaleDay, SkanPostback
from shared.db.session import database_unavailable, make_sessionmaker
from shared.db.upsert import insert_ignoring_duplicates
from shared.reports.figures import DAY_MS, MAX_RANGE_DAYS, tune_for_reports
from shared.reports.rollups import delete_before, roll_day
from shared.reports.stale import SOURCES
from shared.runtime import PeriodicJob
from shared.settings import Settings

log = logging.getLogger(__name__)

HORIZON_DAYS = MAX_RANGE_DAYS
ALL_SOURCES = frozenset(SOURCES)
DAYS_ROLLED = Counter("apprefer_report_days_rolled_total", "App-days whose report figures were rolled up",
                      ["reason"])

Progress = Callable[[str, int, int], None]  # (app_id, app-days rolled so far, app-days to roll in this round)


@dataclass(slots=True)
class RollResult:
    app_days: int = 0  # rolled
    rows: int = 0  # rollup rows written
    busy_apps: list[str] = field(default_factory=list)  # another roller had them: left for the next round
    failed_apps: list[str] = field(default_factory=list)  # an error rolling one of their days (logged)


@dataclass(frozen=True, slots=True)
class RollSettings:
    settle_ms: int
    retention_days: dict[str, int]  # per source table

    @classmethod
    def from_settings(cls, settings: Settings) -> RollSettings:
        return cls(int(settings.rollup_settle_seconds * 1000), {
            "installs": settings.retention_installs_days, "audit_log": settings.retention_audit_days,
            "audit_events": settings.retention_audit_days, "skan_postbacks": settings.retention_skan_days})


def snapshot_sessions(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose transactions read one snapshot: REPEATABLE READ on PostgreSQL. SQLite's transactions are
    serialised already (the state row's UPDATE first takes the write lock)."""
    if engine.dialect.name == "postgresql":
        return make_sessionmaker(engine.execution_options(isolation_level="REPEATABLE READ"))
    return make_sessionmaker(engine)


def _row_times() -> list[tuple[Any, Any, tuple[Any, ...]]]:
    """(table, time column, conditions) of each kind of row a report counts, for the apps' first and newest rows."""
    live = ~Install.sandbox
    return [(Install, Install.installed_at_ms, (live,)),
            (Install, Install.last_install_at_ms, (live, Install.last_install_event_id != Install.event_id)),
            (AuditEntry, AuditEntry.recorded_at_ms, ()),
            (SkanPostback, SkanPostback.received_at_ms, ())]


def _row_days(session: Session, app_ids: list[str], since_ms: int | None = None
              ) -> dict[str, tuple[int, int] | None]:
    """The days of each app's oldest and newest rows in any source, of those at or after `since_ms`; None for
    none. A GROUP BY app_id over the report's (app_id, time) indexes, 500 apps a statement: it reads the apps'
    rows from `since_ms` on (a min or max per app alone would be cheaper, but PostgreSQL may answer one from the
    time-only retention index, filtering by app: a whole-index scan for an app with no rows, when one app holds
    most rows)."""
    found: dict[str, list[int]] = {app_id: [] for app_id in app_ids}
    for start in range(0, len(app_ids), 500):
        chunk = app_ids[start:start + 500]
        for model, at, conditions in _row_times():
            since = () if since_ms is None else (at >= since_ms,)
            for app_id, oldest, newest in session.execute(select(model.app_id, func.min(at), func.max(at)).where(
                    model.app_id.in_(chunk), *conditions, *since).group_by(model.app_id)):
                found[app_id] += [int(ms) for ms in (oldest, newest) if ms is not None]
    return {app_id: (min(times) // DAY_MS, max(times) // DAY_MS) if times else None
            for app_id, times in found.items()}


@dataclass(frozen=True, slots=True)
class AppWork:
    app_id: str
    days: list[tuple[int, frozenset[str], str]]  # (day, sources, reason) in the order to roll them
    dropped_marks: list[int]  # ids of marks nothing will roll (past the horizon or retention)


def plan_app(app_id: str, first_day: int, through_day: int, marks: list[tuple[int, int, str]], *, last_closed: int,
             now_ms: int, retention_days: dict[str, int], newest_day: int | None) -> AppWork:
    """What to roll for one app (pure): marks are (id, day, source); new days only up to the day of the app's
    newest row (`newest_day`, None: it has none; the roller moves the span over the empty days after it)."""
    horizon = last_closed - HORIZON_DAYS + 1
    work: dict[int, set[str]] = {}
    reasons: dict[int, str] = {}
    dropped: list[int] = []
    below = [day for _, day, _ in marks if horizon <= day < first_day]
    new_first = min([first_day, *below])
    last_new = through_day if newest_day is None else min(last_closed, newest_day)
    for day in range(max(through_day + 1, horizon), last_new + 1):
        work[day], reasons[day] = set(ALL_SOURCES), "new"
    for day in range(max(new_first, horizon), first_day):
        work[day], reasons[day] = set(ALL_SOURCES), "earlier"
    for mark_id, day, source in marks:
        if day > last_closed:
            continue  # not rolled yet: the roll that first rolls it deletes the mark
        if day < horizon or day < (now_ms // DAY_MS) - retention_days.get(source, HORIZON_DAYS):
            dropped.append(mark_id)
            continue
        if reasons.get(day, "stale") == "stale":  # a new or earlier day is rolled whole anyway
            work.setdefault(day, set()).add(source)
            reasons[day] = "stale"
    # New days upwards, earlier days downwards (the span stays contiguous if a round stops half-way), stale ones
    # in between.
    order = ([d for d in sorted(work) if reasons[d] == "stale"]
             + sorted((d for d in work if reasons[d] == "earlier"), reverse=True)
             + sorted(d for d in work if reasons[d] == "new"))
    return AppWork(app_id, [(d, frozenset(work[d]), reasons[d]) for d in order], dropped)


def _is_conflict(exc: DBAPIError) -> bool:
    """Another roller's transaction changed the state row after this one's snapshot (PostgreSQL 40001), or a
    deadlock was broken (40P01)."""
    return getattr(exc.orig, "sqlstate", None) in ("40001", "40P01")


def _roll_one(sessions: sessionmaker[Session], app_id: str, day: int, sources: frozenset[str], reason: str,
              now_ms: int) -> int:
    with sessions.begin() as session:
        # First the state row: the app's lock (and SQLite's write lock) before anything is read.
        state = update(ReportRollupState).where(ReportRollupState.app_id == app_id)
        first, through = ReportRollupState.first_day, ReportRollupState.through_day
        if reason == "new":  # never lowered: a roller that planned from an older state rolls a day again, no more
            state = state.values(through_day=case((through < day, day), else_=through))
        elif reason == "earlier":
            state = state.values(first_day=case((first > day, day), else_=first))
        session.execute(state.values(rolled_at_ms=now_ms))
        marks = list(session.scalars(select(ReportStaleDay.id).where(
            ReportStaleDay.app_id == app_id, ReportStaleDay.day == day, ReportStaleDay.source.in_(sorted(sources)))))
        tune_for_reports(session)
        rows = roll_day(session, app_id, day, sources)
        if marks:
            session.execute(delete(ReportStaleDay).where(ReportStaleDay.id.in_(marks)))
    DAYS_ROLLED.labels(reason).inc()
    return rows


def roll_due(engine: Engine, settings: RollSettings, *, now_ms: int | None = None, app_ids: list[str] | None = None,
             progress: Progress | None = None, stop: threading.Event | None = None) -> RollResult:
    """One round: every app's due days (or those of `app_ids`). A set `stop` ends it after the current day."""
    now_ms = runtime.now_ms() if now_ms is None else now_ms
    last_closed = (now_ms - settings.settle_ms) // DAY_MS - 1
    horizon = last_closed - HORIZON_DAYS + 1
    sessions = snapshot_sessions(engine)
    plain = make_sessionmaker(engine)
    result = RollResult()
    with plain() as session:
        apps = select(App.app_id).where(App.deleted_at_ms.is_(None)).order_by(App.app_id)
        wanted = list(session.scalars(apps if app_ids is None else apps.where(App.app_id.in_(app_ids))))
        states = {s.app_id: (s.first_day, s.through_day) for s in session.scalars(select(ReportRollupState))}
        marks: dict[str, list[tuple[int, int, str]]] = {}
        for mark in session.scalars(select(ReportStaleDay)):
            marks.setdefault(mark.app_id, []).append((mark.id, mark.day, mark.source))
    newest: dict[str, int | None] = {}  # per app behind last_closed, its newest row's day since its span
    new = [app_id for app_id in wanted if app_id not in states]
    if new:  # an app's first span starts at its oldest row (no further back than the horizon)
        with plain.begin() as session:
            days = _row_days(session, new)
            newest.update((app_id, found[1] if found else None) for app_id, found in days.items())
            insert_ignoring_duplicates(session, ReportRollupState, [
                {"app_id": app_id, "first_day": first, "through_day": first - 1, "rolled_at_ms": now_ms}
                for app_id, first in ((a, max(d[0], horizon) if d else last_closed + 1) for a, d in days.items())])
        with plain() as session:  # as stored: another roller may have made some of them first
            states.update((s.app_id, (s.first_day, s.through_day)) for s in session.scalars(
                select(ReportRollupState).where(ReportRollupState.app_id.in_(new))))
    # The days after an app's newest row are empty (idle tenants, the quiet days of small ones): the span moves
    # over them without a roll. A row dated in them that is written later marks its day (it is over by then), as
    # any late row. Most apps are behind by the same day: one probe of the rows since then.
    by_through: dict[int, list[str]] = {}
    for app_id in wanted:
        if states[app_id][1] < last_closed and app_id not in newest:
            by_through.setdefault(states[app_id][1], []).append(app_id)
    with plain() as session:
        for through, app_ids in by_through.items():
            newest.update((app_id, found[1] if found else None) for app_id, found in _row_days(
                session, app_ids, since_ms=(through + 1) * DAY_MS).items())
    todo = [plan_app(app_id, *states[app_id], marks.get(app_id, []), last_closed=last_closed, now_ms=now_ms,
                     retention_days=settings.retention_days, newest_day=newest.get(app_id, last_closed))
            for app_id in wanted]
    total = sum(len(work.days) for work in todo)
    empty: list[str] = []  # apps whose days up to last_closed are rolled or empty
    for work in todo:
        if stop is not None and stop.is_set():
            break
        if work.dropped_marks or states[work.app_id][0] < horizon:
            with plain.begin() as session:
                session.execute(delete(ReportStaleDay).where(ReportStaleDay.id.in_(work.dropped_marks)))
                _forget_past_horizon(session, work.app_id, horizon)
        for day, sources, reason in work.days:
            if stop is not None and stop.is_set():
                break  # (the for's else is not reached: the span stays where the rolled days put it)
            try:
                result.rows += _roll_one(sessions, work.app_id, day, sources, reason, now_ms)
            except DBAPIError as exc:
                if _is_conflict(exc):
                    result.busy_apps.append(work.app_id)  # another roller has it now: it rolls these days
                    break
                if database_unavailable(exc):
                    raise  # for every app alike: the round ends, the next one tries again
                log.exception("report roll of an app-day failed", extra={"app_id": work.app_id, "day": day})
                result.failed_apps.append(work.app_id)  # costs only this app: its days stay raw, the others roll
                break
            except Exception:
                log.exception("report roll of an app-day failed", extra={"app_id": work.app_id, "day": day})
                result.failed_apps.append(work.app_id)
                break
            result.app_days += 1
            if progress is not None:
                progress(work.app_id, result.app_days, total)
        else:
            if work.app_id in newest:
                empty.append(work.app_id)
    _move_over_empty_days(plain, empty, last_closed)
    return result


def _move_over_empty_days(sessions: sessionmaker[Session], app_ids: list[str], last_closed: int) -> None:
    through = ReportRollupState.through_day
    with sessions.begin() as session:
        for start in range(0, len(app_ids), 500):
            session.execute(update(ReportRollupState).where(ReportRollupState.app_id.in_(app_ids[start:start + 500]))
                            .values(through_day=case((through < last_closed, last_closed), else_=through)))


def _forget_past_horizon(session: Session, app_id: str, horizon: int) -> None:
    delete_before(session, app_id, horizon)
    session.execute(update(ReportRollupState).where(
        ReportRollupState.app_id == app_id, ReportRollupState.first_day < horizon).values(first_day=horizon))


class Roller(PeriodicJob):
    """`roll_due` every `interval_seconds` on a daemon thread, first at start."""

    def __init__(self, engine: Engine, settings: RollSettings, *, interval_seconds: float) -> None:
        def work(stop: threading.Event) -> None:
            result = roll_due(engine, settings, stop=stop)
            if result.app_days or result.busy_apps or result.failed_apps:
                log.info("report days rolled", extra={"app_days": result.app_days, "rows": result.rows,
                                                      "busy_apps": len(result.busy_apps),
                                                      "failed_apps": len(result.failed_apps)})

        super().__init__("report-roller", work, interval_seconds=interval_seconds)

    @classmethod
    def from_settings(cls, engine: Engine, settings: Settings) -> Roller | None:
        """None when rolling is off (APPREFER_ROLLUP_INTERVAL_SECONDS=0): reports then read raw rows only."""
        if settings.rollup_interval_seconds <= 0:
            return None
        return cls(engine, RollSettings.from_settings(settings), interval_seconds=settings.rollup_interval_seconds)
