"""The adaptive rate limiter: halves on rate limiting, recovers with successes, never sleeps-loops."""

from __future__ import annotations

from shared.forwarding.rate_limit import AdaptiveRateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_requests_are_spaced_by_the_rate() -> None:
    clock = FakeClock()
    limiter = AdaptiveRateLimiter(max_rps=10, clock=clock, sleep=clock.sleep)
    waits = [limiter.acquire() for _ in range(5)]
    assert waits[0] == 0 and all(abs(w - 0.1) < 1e-9 for w in waits[1:])


def test_backs_off_on_rate_limiting_and_recovers() -> None:
    clock = FakeClock()
    limiter = AdaptiveRateLimiter(max_rps=8, min_rps=1, step_rps=1, clock=clock, sleep=clock.sleep)
    for expected in (4, 2, 1, 1):
        limiter.on_rate_limited()
        assert limiter.rate == expected
    for _ in range(3):
        limiter.on_success()
    assert limiter.rate == 4
    for _ in range(20):
        limiter.on_success()
    assert limiter.rate == 8  # never above the ceiling


def test_slower_rate_means_longer_waits() -> None:
    clock = FakeClock()
    limiter = AdaptiveRateLimiter(max_rps=10, min_rps=0.5, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    limiter.on_rate_limited()
    limiter.on_rate_limited()  # 2.5 rps
    limiter.acquire()
    assert abs(limiter.acquire() - 0.4) < 1e-9
