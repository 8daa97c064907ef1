"""Pure parts of forwarding isolation: the circuit breaker, per-integration rates, secret redaction."""

from __future__ import annotations

import pytest

from shared.forwarding.breaker import CircuitBreaker
from shared.forwarding.rate_limit import RateLimits
from shared.forwarding.redact import REDACTED, redact, secret_values


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_opens_after_consecutive_failures_and_closes_on_the_first_answer() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=3, cooldown_seconds=30, clock=clock)
    for _ in range(2):
        breaker.failed("app-1")
    assert breaker.blocked_for("app-1") is None  # two failures: still calling
    breaker.succeeded("app-1")
    breaker.failed("app-1")
    breaker.failed("app-1")
    assert breaker.blocked_for("app-1") is None  # the success reset the count
    breaker.failed("app-1")
    assert breaker.blocked_for("app-1") == pytest.approx(30)
    assert breaker.blocked_for("app-2") is None  # other apps are not affected
    assert breaker.open_count() == 1
    clock.now += 10
    assert breaker.blocked_for("app-1") == pytest.approx(20)
    clock.now += 20
    assert breaker.blocked_for("app-1") is None  # the cool-down's one trial call
    assert breaker.blocked_for("app-1") is not None  # and only one while it is out
    breaker.failed("app-1")  # the trial failed: a new cool-down
    assert breaker.blocked_for("app-1") == pytest.approx(30)
    clock.now += 30
    assert breaker.blocked_for("app-1") is None
    breaker.succeeded("app-1")
    assert breaker.blocked_for("app-1") is None and breaker.failures("app-1") == 0 and breaker.open_count() == 0


def test_a_late_failure_of_an_earlier_call_does_not_restart_the_cool_down() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=2, cooldown_seconds=30, clock=clock)
    breaker.failed("app")
    breaker.failed("app")
    clock.now += 20
    breaker.failed("app")  # a call made before the breaker opened timed out just now
    assert breaker.blocked_for("app") == pytest.approx(10)


def test_a_breaker_needs_sane_settings() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(threshold=0, cooldown_seconds=1)


def test_rate_limiting_slows_only_the_limited_integration_under_one_ceiling() -> None:
    clock = Clock()
    rates = RateLimits(max_rps=10, clock=clock)
    rates.rate_limited("app-1")
    rates.rate_limited("app-1")
    assert rates.rate("app-1") == pytest.approx(2.5)
    assert rates.rate("app-2") == 10
    assert rates.slowest() == pytest.approx(2.5)
    # app-1's slots are 0.4 s apart; app-2 is held only by the shared ceiling (0.1 s apart).
    assert rates.reserve("app-1") == pytest.approx(0.0)
    assert rates.reserve("app-1") == pytest.approx(0.4)
    assert rates.reserve("app-2") == pytest.approx(0.2)  # the ceiling's third slot
    for _ in range(20):
        rates.succeeded("app-1")
    assert rates.rate("app-1") == 10 and rates.slowest() == 10  # recovered, and forgotten


def test_redaction_removes_the_integrations_secrets_and_anything_named_like_one() -> None:
    credentials = {"access_token": "EAABsecret123", "oauth": {"client_secret": "cs-456789", "n": 1},
                   "list": ["refresh-000111"], "short": "ab"}
    secrets = secret_values(credentials, "ya29.minted-token")
    assert secrets[0] == "ya29.minted-token"  # longest first
    assert "ab" not in secrets  # too short to replace safely
    text = ("ClientConnectorError: Cannot connect to host graph.example:443 "
            "url=https://graph.example/v26.0/1/events?access_token=EAABsecret123&x=1 "
            "cs-456789 refresh-000111 Authorization: Bearer ya29.minted-token "
            '{"developer_token": "dev-tok-999"} token=unknownvalue')
    cleaned = redact(text, secrets)
    for secret in ("EAABsecret123", "cs-456789", "refresh-000111", "ya29.minted-token", "dev-tok-999",
                   "unknownvalue"):
        assert secret not in cleaned, (secret, cleaned)
    assert REDACTED in cleaned and "graph.example:443" in cleaned and "&x=1" in cleaned
    assert redact("token endpoint: no answer within 10 s") == "token endpoint: no answer within 10 s"
