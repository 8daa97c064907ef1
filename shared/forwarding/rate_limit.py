"""A per-network request rate that backs off on rate limiting and recovers without it (AIMD).

Halving on every "slow down" and adding a little per success converges on what the network
accepts without a configured quota; the ceiling keeps a healthy network from being flooded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# The networks' own "too many requests" codes (networks.md), besides HTTP 429.
RATE_LIMIT_CODES = frozenset({"17", "4", "32", "613", "80004", "40100", "RESOURCE_EXHAUSTED", "429"})


class AdaptiveRateLimiter:
    def __init__(self, max_rps: float, min_rps: float = 0.5, step_rps: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.max_rps, self.min_rps, self.step_rps = max_rps, min_rps, step_rps
        self.rate = max_rps
        self._clock, self._sleep = clock, sleep
        self._next_at = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Waits for the next request slot; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next_at)
            self._next_at = start + 1.0 / self.rate
        waited = start - now
        if waited > 0:
            self._sleep(waited)
        return waited

    def on_rate_limited(self) -> None:
        with self._lock:
            self.rate = max(self.min_rps, self.rate / 2)

    def on_success(self) -> None:
        with self._lock:
            self.rate = min(self.max_rps, self.rate + self.step_rps)
