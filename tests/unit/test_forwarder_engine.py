"""The forwarding engine's pure decisions: backoff schedule and token cache."""

from __future__ import annotations

import pytest

from shared.forwarding.forwarder import TokenCache, retry_delay

DELAYS = [10.0, 60.0, 300.0]


@pytest.mark.parametrize(("attempts_made", "base"), [(1, 10.0), (2, 60.0), (3, 300.0)])
def test_backoff_follows_the_schedule_with_jitter(attempts_made: int, base: float) -> None:
    assert retry_delay(attempts_made, DELAYS, None, jitter=lambda: 0.0) == pytest.approx(base * 0.8)
    assert retry_delay(attempts_made, DELAYS, None, jitter=lambda: 1.0) == pytest.approx(base * 1.2)


def test_attempts_run_out_after_the_last_delay() -> None:
    assert retry_delay(4, DELAYS, None) is None


def test_retry_after_is_a_floor() -> None:
    assert retry_delay(1, DELAYS, 120.0, jitter=lambda: 0.5) == 120.0
    assert retry_delay(3, DELAYS, 120.0, jitter=lambda: 0.5) == 300.0


def test_token_cache_expires_before_the_token_does() -> None:
    cache = TokenCache()
    cache.put("app", "tok", lifetime=3600)
    assert cache.get("app") == "tok"
    cache.put("app", "short", lifetime=30)  # inside the safety margin: treated as already expired
    assert cache.get("app") is None
    cache.put("app", "tok", lifetime=3600)
    cache.drop("app")
    assert cache.get("app") is None


def test_a_delivered_audit_row_has_one_id_per_event_and_network() -> None:
    from shared.forwarding.audit import delivered_audit_id

    assert delivered_audit_id("e1", "meta") == delivered_audit_id("e1", "meta")
    assert len({delivered_audit_id("e1", "meta"), delivered_audit_id("e1", "tiktok"),
                delivered_audit_id("e2", "meta")}) == 3
    assert len(delivered_audit_id("e" * 100, "google_ads")) <= 64  # fits audit_log.audit_id
