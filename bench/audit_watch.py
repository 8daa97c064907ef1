"""Watching audit_log in PostgreSQL: when each benchmark event's row became visible.

A thread polls `SELECT ... FROM audit_log WHERE id > low` every 100 ms. A row first returned by the
poll that started at time T was committed before T and after the previous poll started, so T is when
the row became visible, late by at most one interval (100 ms; 50 ms on average): the latencies derived
from it are slight overestimates, never underestimates. Event ids end with their send time (bench/loadgen.py),
so latency = T - send time, for every event, with no clock other than this machine's.

Ids come from a sequence and two audit writers can commit out of id order, so each poll re-reads a margin
below the highest id seen and skips ids already counted.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized

import psycopg

POLL_SECONDS = 0.1
ID_MARGIN = 5_000


@dataclass
class Arrival:
    seen_ms: int  # start of the poll that first returned the row
    send_ms: int  # from the event id
    recorded_ms: int  # audit_log.recorded_at_ms: when the forwarder (or fanout) produced the audit record


@dataclass
class PhaseRows:
    delivered: list[Arrival] = field(default_factory=list)
    other_statuses: Counter[str] = field(default_factory=Counter)


class AuditWatcher(threading.Thread):
    def __init__(self, database_url: str) -> None:
        super().__init__(name="audit-watcher", daemon=True)
        self._url = database_url
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self._phases: dict[str, PhaseRows] = defaultdict(PhaseRows)
        self._counters: dict[str, Synchronized[int]] = {}
        self._seen_ids: set[int] = set()
        self._max_id = 0
        self.error: BaseException | None = None

    def publish_count(self, prefix: str, counter: Synchronized[int]) -> None:
        """Keep `counter` equal to the number of delivered rows of `prefix` (for the closed-loop load)."""
        with self._lock:
            counter.value = len(self._phases[prefix].delivered)
            self._counters[prefix] = counter

    def rows(self, prefix: str) -> PhaseRows:
        with self._lock:
            phase = self._phases[prefix]
            return PhaseRows(list(phase.delivered), Counter(phase.other_statuses))

    def delivered_count(self, prefix: str) -> int:
        with self._lock:
            return len(self._phases[prefix].delivered)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)

    def run(self) -> None:
        try:
            with psycopg.connect(self._url, autocommit=True) as conn:
                while not self._stop_event.is_set():
                    started = time.time()
                    rows = conn.execute(
                        "SELECT id, event_id, status, recorded_at_ms FROM audit_log WHERE id > %s ORDER BY id",
                        (max(0, self._max_id - ID_MARGIN),),
                    ).fetchall()
                    self._take(rows, int(started * 1000))
                    self._stop_event.wait(max(0.0, POLL_SECONDS - (time.time() - started)))
        except BaseException as exc:  # reported by the benchmark that reads the rows
            self.error = exc

    def _take(self, rows: list[tuple[int, str, str, int]], seen_ms: int) -> None:
        with self._lock:
            touched: set[str] = set()
            for row_id, event_id, status, recorded_ms in rows:
                if row_id in self._seen_ids:
                    continue
                self._seen_ids.add(row_id)
                self._max_id = max(self._max_id, row_id)
                prefix, _, send = event_id.rpartition("-")
                phase_prefix = prefix.split("-", 1)[0]
                phase = self._phases[phase_prefix]
                if status == "delivered":
                    phase.delivered.append(Arrival(seen_ms, int(send), recorded_ms))
                    touched.add(phase_prefix)
                else:
                    phase.other_statuses[status] += 1
            for prefix in touched:
                counter = self._counters.get(prefix)
                if counter is not None:
                    counter.value = len(self._phases[prefix].delivered)
            low = self._max_id - ID_MARGIN
            if len(self._seen_ids) > 4 * ID_MARGIN:
                self._seen_ids = {i for i in self._seen_ids if i > low}
