"""A circuit breaker per integration (app + network), so one tenant's dead endpoint costs only its own jobs.

After `threshold` consecutive transport failures or timeouts (no HTTP answer at all), the breaker opens:
for `cooldown_seconds` that integration's jobs go to the retry topic with no call made. Then one call
is let through; an answer closes the breaker, another failure opens it again for a new cool-down.
Any HTTP answer counts as success here, a 5xx included: the endpoint is reachable, and the network
module's classifier decides what the answer means.

Used from the forwarder's HTTP event loop only (one thread): no lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _State:
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False


class CircuitBreaker:
    def __init__(self, threshold: int, cooldown_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        if threshold < 1 or cooldown_seconds < 0:
            raise ValueError("a breaker needs threshold >= 1 and cooldown_seconds >= 0")
        self.threshold, self.cooldown_seconds = threshold, cooldown_seconds
        self._clock = clock
        self._states: dict[str, _State] = {}

    def blocked_for(self, key: str) -> float | None:
        """None when a call may be made now, else the seconds until one may."""
        state = self._states.get(key)
        if state is None or state.opened_at is None:
            return None
        left = state.opened_at + self.cooldown_seconds - self._clock()
        if left > 0:
            return left
        if state.probing:  # the cool-down's one trial call is still out
            return max(1.0, self.cooldown_seconds / 10)
        state.probing = True
        return None

    def failures(self, key: str) -> int:
        state = self._states.get(key)
        return state.failures if state else 0

    def succeeded(self, key: str) -> None:
        self._states.pop(key, None)

    def failed(self, key: str) -> None:
        state = self._states.setdefault(key, _State())
        state.failures += 1
        # Open when the count is reached, or again when the cool-down's trial call failed. A late
        # failure of a call made before the breaker opened does not restart the cool-down.
        if (state.opened_at is None and state.failures >= self.threshold) or state.probing:
            state.opened_at = self._clock()
        state.probing = False

    def open_count(self) -> int:
        return sum(1 for state in self._states.values() if state.opened_at is not None)
