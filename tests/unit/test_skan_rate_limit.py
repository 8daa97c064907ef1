"""The per-source token bucket for SKAN postbacks no app is waiting for, and the summary kept of them."""

from __future__ import annotations

import pytest

from services.domain.skan.postback_input import SUMMARY_FIELDS, SourceRateLimiter, summary


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_full_bucket_then_one_token_per_interval() -> None:
    clock = FakeClock()
    limiter = SourceRateLimiter(per_minute=60, clock=clock)
    assert [limiter.take("10.0.0.1") for _ in range(60)] == [0.0] * 60
    assert limiter.take("10.0.0.1") == pytest.approx(1.0)
    clock.now += 0.5
    assert limiter.take("10.0.0.1") == pytest.approx(0.5)  # a refusal takes nothing
    clock.now += 0.5
    assert limiter.take("10.0.0.1") == 0.0
    assert limiter.take("10.0.0.1") == pytest.approx(1.0)


def test_sources_are_limited_apart() -> None:
    clock = FakeClock()
    limiter = SourceRateLimiter(per_minute=2, clock=clock)
    assert [limiter.take("a"), limiter.take("a"), limiter.take("b")] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(30.0)
    assert limiter.take("b") == 0.0
    assert limiter.take("b") > 0


def test_an_idle_source_refills_only_up_to_the_burst() -> None:
    clock = FakeClock()
    limiter = SourceRateLimiter(per_minute=3, clock=clock)
    for _ in range(3):
        limiter.take("a")
    clock.now += 3600
    assert [limiter.take("a") for _ in range(3)] == [0.0] * 3
    assert limiter.take("a") == pytest.approx(20.0)


def test_a_rate_below_one_a_minute_still_lets_one_through() -> None:
    clock = FakeClock()
    limiter = SourceRateLimiter(per_minute=0.5, clock=clock)
    assert limiter.take("a") == 0.0
    assert limiter.take("a") == pytest.approx(120.0)


def test_memory_is_bounded_forgetting_the_least_recently_seen_source() -> None:
    clock = FakeClock()
    limiter = SourceRateLimiter(per_minute=1, max_sources=3, clock=clock)
    for source in ("a", "b", "c"):
        assert limiter.take(source) == 0.0
    assert limiter.take("a") > 0  # a is now the most recently seen
    assert limiter.take("d") == 0.0
    assert len(limiter) == 3  # b was forgotten
    assert limiter.take("a") > 0 and limiter.take("c") > 0
    for index in range(10_000):
        limiter.take(f"10.{index}")
    assert len(limiter) == 3


@pytest.mark.parametrize(("per_minute", "max_sources"), [(0, 10), (-1, 10), (1, 0)])
def test_nonsense_settings_are_refused(per_minute: float, max_sources: int) -> None:
    with pytest.raises(ValueError):
        SourceRateLimiter(per_minute=per_minute, max_sources=max_sources)


def test_the_summary_keeps_only_the_key_fields() -> None:
    postback = {"version": "4.0", "ad-network-id": "example.skadnetwork", "source-identifier": "1234",
                "app-id": 525463029, "transaction-id": "t-1", "postback-sequence-index": 1,
                "attribution-signature": "MEUCIQ", "coarse-conversion-value": "high", "pad": "x" * 10_000}
    assert summary(postback) == {"version": "4.0", "ad-network-id": "example.skadnetwork", "app-id": 525463029,
                                 "transaction-id": "t-1", "postback-sequence-index": 1}
    assert set(summary({"transaction-id": "t", "app-id": 1})) == {"transaction-id", "app-id"}
    assert set(SUMMARY_FIELDS) == {"transaction-id", "postback-sequence-index", "app-id", "ad-network-id", "version"}
