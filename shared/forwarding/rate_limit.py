"""Request rates that back off on rate limiting and recover without it (AIMD), one per integration.

Halving on every "slow down" and adding a little per success converges on what the network
accepts without a configured quota; the ceiling keeps a healthy network from being flooded. The
networks limit per ad account, dataset or customer, so each integration (app + network) has a rate
of its own (`RateLimits`), under the process-wide ceiling: one app's 429s slow only that app.
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

    def reserve(self) -> float:
        """Books the next request slot; returns the seconds until it (the caller waits them)."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next_at)
            self._next_at = start + 1.0 / self.rate
        return start - now

    def acquire(self) -> float:
        """Waits for the next request slot; returns the seconds waited."""
        waited = self.reserve()
        if waited > 0:
            self._sleep(waited)
        return waited

    def on_rate_limited(self) -> None:
        with self._lock:
            self.rate = max(self.min_rps, self.rate / 2)

    def on_success(self) -> None:
        with self._lock:
            self.rate = min(self.max_rps, self.rate + self.step_rps)


class RateLimits:
    """The process-wide ceiling (never slowed) and an adaptive rate per integration key under it."""

    def __init__(self, max_rps: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_rps = max_rps
        self._clock = clock
        self._ceiling = AdaptiveRateLimiter(max_rps, clock=clock)
        self._per_key: dict[str, AdaptiveRateLimiter] = {}

    def _limiter(self, key: str) -> AdaptiveRateLimiter:
        limiter = self._per_key.get(key)
        if limiter is None:
            limiter = self._per_key[key] = AdaptiveRateLimiter(self.max_rps, clock=self._clock)
        return limiter

    def reserve(self, key: str) -> float:
        """Seconds until this key may send: the later of its own next slot and the ceiling's."""
        return max(self._limiter(key).reserve(), self._ceiling.reserve())

    def rate_limited(self, key: str) -> None:
        self._limiter(key).on_rate_limited()

    def succeeded(self, key: str) -> None:
        limiter = self._per_key.get(key)
        if limiter is not None:
            limiter.on_success()
            if limiter.rate >= self.max_rps:
                del self._per_key[key]  # back at the ceiling: nothing to remember

    def rate(self, key: str) -> float:
        limiter = self._per_key.get(key)
        return limiter.rate if limiter is not None else self.max_rps

    def slowest(self) -> float:
        """The lowest rate any integration is held to (the ceiling when none is slowed)."""
        return min((limiter.rate for limiter in self._per_key.values()), default=self.max_rps)
