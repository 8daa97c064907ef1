"""Process-wide settings for long-running services."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable

# Every record a service handles allocates a few dicts, so CPython's default first-generation
# threshold (700 allocations) runs the cyclic collector every few records, each time walking the
# young objects again. Our records form no reference cycles worth collecting that often.
YOUNG_GENERATION_THRESHOLD = 50_000


def settle_heap() -> None:
    """Call once start-up is done: moves the objects made so far (modules, schemas, clients) out of
    the collector's sight, and makes collections rarer."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, older, oldest)


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds, the unit of every stored time."""
    return int(time.time() * 1000)


class PeriodicJob:
    """`work(stop)` every `interval_seconds` on a daemon thread beside a service's main loop, first at start (a
    service restarted more often than the interval still does it). An exception is logged and the next round
    tries again (a database away for now); `work` should return soon once `stop` is set."""

    def __init__(self, name: str, work: Callable[[threading.Event], None], *, interval_seconds: float) -> None:
        self._name = name
        self._work = work
        self._interval = interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._work(self._stop)
            except Exception:
                logging.getLogger(__name__).exception("%s failed", self._name)
            self._stop.wait(self._interval)
