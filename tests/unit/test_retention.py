"""Retention settings: defaults, and windows refused where attribution or de-duplication needs them."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.admin.api.apps import AppIn
from services.privacy.retention import Pruner, windows
from shared.settings import DAY_MS, MAX_LOOKBACK_DAYS, MAX_REATTRIBUTION_DAYS, Settings

RETENTION_VARIABLES = ("APPREFER_RETENTION_CLICKS_DAYS", "APPREFER_RETENTION_INSTALLS_DAYS",
                       "APPREFER_RETENTION_AUDIT_DAYS", "APPREFER_RETENTION_SKAN_DAYS",
                       "APPREFER_RETENTION_DELIVERIES_DAYS", "APPREFER_TOPIC_RETENTION_MS",
                       "APPREFER_PRUNE_INTERVAL_SECONDS", "APPREFER_PRUNE_BATCH_ROWS")


@pytest.fixture(autouse=True)
def _no_retention_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in RETENTION_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def settings(**fields: Any) -> Settings:
    return Settings(**fields)


def _bound(field: str, name: str) -> int:
    return next(int(getattr(m, name)) for m in AppIn.model_fields[field].metadata if hasattr(m, name))


def test_the_attribution_bounds_are_the_admin_apis() -> None:
    assert _bound("lookback_days", "le") == MAX_LOOKBACK_DAYS
    assert _bound("reattribution_days", "le") == MAX_REATTRIBUTION_DAYS


def test_defaults_and_what_each_window_prunes() -> None:
    defaults = settings()
    assert {w.table: (w.time_column, w.days) for w in windows(defaults)} == {
        "clicks": ("clicked_at_ms", 90), "installs": ("installed_at_ms", 365), "audit_log": ("recorded_at_ms", 90),
        "audit_events": ("first_ms", 90), "skan_postbacks": ("received_at_ms", 180),
        "deliveries": ("delivered_at_ms", 30)}
    assert defaults.topic_retention_ms == 7 * DAY_MS
    assert defaults.prune_interval_seconds == 3600 and defaults.prune_batch_rows == 5000
    clicks = windows(defaults)[0]
    assert clicks.cutoff_ms(100 * DAY_MS) == 10 * DAY_MS


def test_windows_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPREFER_RETENTION_AUDIT_DAYS", "7")
    monkeypatch.setenv("APPREFER_RETENTION_CLICKS_DAYS", "120")
    configured = {w.table: w.days for w in windows(Settings())}
    assert configured["audit_log"] == 7 and configured["clicks"] == 120


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("APPREFER_RETENTION_CLICKS_DAYS", "30", "at least 90 days"),
    ("APPREFER_RETENTION_INSTALLS_DAYS", "90", "at least 365 days"),
    ("APPREFER_RETENTION_DELIVERIES_DAYS", "3", "must cover APPREFER_TOPIC_RETENTION_MS (7 days)"),
    ("APPREFER_RETENTION_AUDIT_DAYS", "0", "greater than or equal to 1"),
    ("APPREFER_TOPIC_RETENTION_MS", "0", "greater than 0"),
])
def test_a_window_too_short_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str,
                                                           value: str, says: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    [error] = caught.value.errors()
    assert error["loc"] == (variable,) and says in error["msg"]


def test_the_ledger_may_be_shorter_when_topics_keep_records_less() -> None:
    assert settings(topic_retention_ms=DAY_MS, retention_deliveries_days=1).retention_deliveries_days == 1


def test_pruning_is_off_at_interval_zero() -> None:
    assert Pruner.from_settings(None, settings(prune_interval_seconds=0)) is None  # type: ignore[arg-type]
    assert Pruner.from_settings(None, settings()) is not None  # type: ignore[arg-type]
