"""Retention: rows older than their table's window are deleted, oldest first, in bounded batches.

`apprefer db prune [--dry-run]` does it once; the audit service does it every APPREFER_PRUNE_INTERVAL_SECONDS
(default 3600, 0 = never), in a thread beside its consumer. Each window bounds something:

- clicks, by clicked_at_ms, APPREFER_RETENTION_CLICKS_DAYS (90): an install matches only a click still kept;
  at least the longest lookback an app may set (90 days).
- installs, by installed_at_ms, APPREFER_RETENTION_INSTALLS_DAYS (365): each row holds its device's attribution.
  Later events of a device whose install is gone are forwarded unattributed, and its next install is
  attributed afresh. At least the longest re-attribution window an app may set (365 days).
- audit_log, by recorded_at_ms, APPREFER_RETENTION_AUDIT_DAYS (90): how far back GET /admin/v1/audit answers;
  audit_events (each event's first audit row, for the report), by first_ms, with it. The report's daily rollups
  keep the figures of pruned days (shared/reports/roller.py).
- skan_postbacks, by received_at_ms, APPREFER_RETENTION_SKAN_DAYS (180): how long a postback can be looked up,
  and a copy of it is known as a duplicate (a later copy is decoded again).
- deliveries, by delivered_at_ms, APPREFER_RETENTION_DELIVERIES_DAYS (30): how long a redelivered or replayed
  job is known as delivered and not sent again; at least the topics' retention (APPREFER_TOPIC_RETENTION_MS).

The settings refuse shorter windows where attribution or de-duplication needs them (shared/settings.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from prometheus_client import Counter
from sqlalchemy import Column, CursorResult, Table, delete, func, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import AuditEntry, AuditEvent, Base, Click, Delivery, Install, SkanPostback
from shared.runtime import PeriodicJob
from shared.settings import DAY_MS, Settings

log = logging.getLogger(__name__)

ROWS_PRUNED = Counter("apprefer_rows_pruned_total", "Rows deleted for being older than their table's window",
                      ["table"])

Progress = Callable[[str, int], None]  # (table, rows deleted by the last batch)


@dataclass(frozen=True, slots=True)
class Window:
    table: str
    model: type[Base]
    time_column: str
    days: int

    def cutoff_ms(self, now_ms: int) -> int:
        return now_ms - self.days * DAY_MS

    @property
    def _table(self) -> Table:
        return cast(Table, self.model.__table__)

    @property
    def _time(self) -> Column[Any]:
        return self._table.c[self.time_column]

    def count_older(self, session: Session, cutoff_ms: int) -> int:
        return int(session.scalar(select(func.count()).select_from(self._table).where(self._time < cutoff_ms)) or 0)

    def delete_oldest(self, session: Session, cutoff_ms: int, rows: int) -> int:
        """Deletes at most `rows` of the oldest expired rows in one statement. The outer condition is checked
        again on a row another transaction just changed (a device re-installing after years): it stays."""
        key = list(self._table.primary_key.columns)
        oldest = select(*key).where(self._time < cutoff_ms).order_by(self._time).limit(rows)
        in_batch = key[0].in_(oldest) if len(key) == 1 else tuple_(*key).in_(oldest)
        result = session.execute(delete(self._table).where(self._time < cutoff_ms, in_batch))
        return int(cast(CursorResult[Any], result).rowcount or 0)


def windows(settings: Settings) -> list[Window]:
    return [
        Window("clicks", Click, "clicked_at_ms", settings.retention_clicks_days),
        Window("installs", Install, "installed_at_ms", settings.retention_installs_days),
        Window("audit_log", AuditEntry, "recorded_at_ms", settings.retention_audit_days),
        Window("audit_events", AuditEvent, "first_ms", settings.retention_audit_days),
        Window("skan_postbacks", SkanPostback, "received_at_ms", settings.retention_skan_days),
        Window("deliveries", Delivery, "delivered_at_ms", settings.retention_deliveries_days),
    ]


def now_ms() -> int:
    return int(time.time() * 1000)


def count_expired(sessions: sessionmaker[Session], table_windows: list[Window],
                  at_ms: int | None = None) -> dict[str, int]:
    """Rows each table would lose now: what `--dry-run` shows."""
    at_ms = now_ms() if at_ms is None else at_ms
    with sessions() as session:
        return {window.table: window.count_older(session, window.cutoff_ms(at_ms)) for window in table_windows}


def prune(sessions: sessionmaker[Session], table_windows: list[Window], *, batch_rows: int,
          at_ms: int | None = None, progress: Progress | None = None,
          stop: threading.Event | None = None) -> dict[str, int]:
    """Deletes each table's expired rows, a batch per transaction so that no lock is held for long; returns
    the rows deleted per table. A set `stop` ends the work after the current batch."""
    at_ms = now_ms() if at_ms is None else at_ms
    deleted: dict[str, int] = {}
    for window in table_windows:
        cutoff = window.cutoff_ms(at_ms)
        deleted[window.table] = 0
        while stop is None or not stop.is_set():
            with sessions.begin() as session:
                batch = window.delete_oldest(session, cutoff, batch_rows)
            deleted[window.table] += batch
            ROWS_PRUNED.labels(window.table).inc(batch)
            if progress is not None:
                progress(window.table, batch)
            if batch < batch_rows:
                break
    return deleted


class Pruner(PeriodicJob):
    """`prune` every `interval_seconds` on a daemon thread, first at start."""

    def __init__(self, sessions: sessionmaker[Session], table_windows: list[Window], *, interval_seconds: float,
                 batch_rows: int) -> None:
        def work(stop: threading.Event) -> None:
            deleted = prune(sessions, table_windows, batch_rows=batch_rows, stop=stop)
            log.info("pruned", extra={"deleted": deleted})

        super().__init__("pruner", work, interval_seconds=interval_seconds)

    @classmethod
    def from_settings(cls, sessions: sessionmaker[Session], settings: Settings) -> Pruner | None:
        """None when pruning is off (APPREFER_PRUNE_INTERVAL_SECONDS=0)."""
        if settings.prune_interval_seconds <= 0:
            return None
        return cls(sessions, windows(settings), interval_seconds=settings.prune_interval_seconds,
                   batch_rows=settings.prune_batch_rows)
