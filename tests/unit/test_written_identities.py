"""The attribution consumer rewrites an identity row only when it changed or is getting old."""

from __future__ import annotations

from typing import Any

from services.attribution.consumer import WrittenIdentities

REFRESH = WrittenIdentities.REFRESH_MS


def row(value: str, device_id: str, seen_at_ms: int, kind: str = "gaid", sandbox: bool = False) -> dict[str, Any]:
    return {"app_id": "app", "kind": kind, "value": value, "sandbox": sandbox, "device_id": device_id,
            "seen_at_ms": seen_at_ms}


def test_unchanged_rows_are_skipped_until_they_need_a_refresh() -> None:
    written = WrittenIdentities()
    assert written.changed([row("g1", "d1", 0), row("g2", "d2", 0)]) == [row("g1", "d1", 0), row("g2", "d2", 0)]
    assert written.changed([row("g1", "d1", 1000)]) == []
    assert written.changed([row("g1", "d1", REFRESH - 1)]) == []
    assert written.changed([row("g1", "d1", REFRESH)]) == [row("g1", "d1", REFRESH)]


def test_a_new_device_for_an_identity_is_always_written() -> None:
    written = WrittenIdentities()
    written.changed([row("g1", "d1", 0)])
    assert written.changed([row("g1", "d2", 5)]) == [row("g1", "d2", 5)]
    assert written.changed([row("g1", "d1", 6)]) == [row("g1", "d1", 6)]
    assert written.changed([row("g1", "d1", 7, kind="idfa")]) == [row("g1", "d1", 7, kind="idfa")]


def test_forget_after_a_rolled_back_batch_writes_everything_again() -> None:
    written = WrittenIdentities()
    written.changed([row("g1", "d1", 0)])
    written.forget()
    assert written.changed([row("g1", "d1", 1)]) == [row("g1", "d1", 1)]


def test_a_test_identity_is_kept_apart_from_the_live_one() -> None:
    written = WrittenIdentities()
    assert written.changed([row("g", "d1", 1)]) == [row("g", "d1", 1)]
    assert written.changed([row("g", "d1", 2, sandbox=True)]) == [row("g", "d1", 2, sandbox=True)]
