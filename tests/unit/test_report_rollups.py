"""The report's pure planning: which days of a range come from rollups and which from raw rows (rollups.plan,
reports.plans), and what the roller rolls for an app (roller.plan_app)."""

from __future__ import annotations

from services.admin.stores.reports import ReportRequest, plans
from shared.reports.figures import DAY_MS
from shared.reports.roller import HORIZON_DAYS, plan_app
from shared.reports.rollups import MAX_RAW_SPANS, Plan, plan

D = 20_000  # a day number
H = 3_600_000
RETENTION = {"installs": 365, "audit_log": 90, "audit_events": 90, "skan_postbacks": 180}


def ms(day: int, hours: int = 0) -> int:
    return day * DAY_MS + hours * H


def test_whole_rolled_days_are_runs_and_the_rest_raw_spans() -> None:
    assert plan(ms(D), ms(D + 7), lambda day: True) == Plan([(D, D + 7)], [])
    assert plan(ms(D), ms(D + 7), lambda day: False) == Plan([], [(ms(D), ms(D + 7))])
    # partial first and last days are raw, whatever the rollups hold
    assert plan(ms(D, 5), ms(D + 3, 2), lambda day: True) == Plan(
        [(D + 1, D + 3)], [(ms(D, 5), ms(D + 1)), (ms(D + 3), ms(D + 3, 2))])
    # a stale day in the middle splits the run; today (not rolled) is raw
    assert plan(ms(D), ms(D + 7), lambda day: day not in (D + 2, D + 6)) == Plan(
        [(D, D + 2), (D + 3, D + 6)], [(ms(D + 2), ms(D + 3)), (ms(D + 6), ms(D + 7))])
    # within one day
    assert plan(ms(D, 1), ms(D, 2), lambda day: True) == Plan([], [(ms(D, 1), ms(D, 2))])


def test_too_many_raw_spans_read_the_whole_range_raw() -> None:
    stale = set(range(D, D + 2 * (MAX_RAW_SPANS + 1), 2))
    assert plan(ms(D), ms(D + 30), lambda day: day not in stale) == Plan([], [(ms(D), ms(D + 30))])


def test_a_report_uses_each_tables_own_marks() -> None:
    request = ReportRequest("app", ms(D), ms(D + 5))
    found = plans(request, (D - 10, D + 3), [(D + 1, "installs"), (D + 2, "audit_events")])
    assert found["installs"] == Plan([(D, D + 1), (D + 2, D + 4)], [(ms(D + 1), ms(D + 2)), (ms(D + 4), ms(D + 5))])
    assert found["audit_events"] == Plan([(D, D + 2), (D + 3, D + 4)],
                                         [(ms(D + 2), ms(D + 3)), (ms(D + 4), ms(D + 5))])
    assert found["audit_log"] == Plan([(D, D + 4)], [(ms(D + 4), ms(D + 5))])
    assert found["skan_postbacks"] == Plan([(D, D + 4)], [(ms(D + 4), ms(D + 5))])
    # no rollups yet: everything raw
    assert plans(request, None, [])["installs"] == Plan([], [(ms(D), ms(D + 5))])


def work(first: int, through: int, marks: list[tuple[int, int, str]], last_closed: int = D + 9,
         newest: int | None = D + 9) -> tuple[list[tuple[int, list[str], str]], list[int]]:
    found = plan_app("app", first, through, marks, last_closed=last_closed, now_ms=ms(last_closed + 1, 1),
                     retention_days=RETENTION, newest_day=newest)
    return [(day, sorted(sources), reason) for day, sources, reason in found.days], found.dropped_marks


ALL = ["audit_events", "audit_log", "installs", "skan_postbacks"]


def test_new_days_are_rolled_upwards_and_stale_ones_again() -> None:
    assert work(D, D + 7, []) == ([(D + 8, ALL, "new"), (D + 9, ALL, "new")], [])
    assert work(D, D + 9, []) == ([], [])
    days, dropped = work(D, D + 9, [(1, D + 2, "installs"), (2, D + 4, "audit_log"), (3, D + 9, "skan_postbacks"),
                                    (4, D + 4, "audit_events")])
    assert days == [(D + 2, ["installs"], "stale"), (D + 4, ["audit_events", "audit_log"], "stale"),
                    (D + 9, ["skan_postbacks"], "stale")] and dropped == []
    # a mark of a day not over yet waits for that day's first roll; one of a new day is rolled with it
    assert work(D, D + 7, [(1, D + 10, "installs"), (2, D + 8, "installs")]) == (
        [(D + 8, ALL, "new"), (D + 9, ALL, "new")], [])


def test_new_days_stop_at_the_newest_row() -> None:
    assert work(D, D + 5, [], newest=D + 7) == ([(D + 6, ALL, "new"), (D + 7, ALL, "new")], [])
    assert work(D, D + 5, [], newest=D + 3) == ([], [])  # nothing since: the roller moves the span over them
    assert work(D, D + 5, [], newest=None) == ([], [])
    assert work(D, D + 5, [(1, D + 2, "installs")], newest=None) == ([(D + 2, ["installs"], "stale")], [])


def test_a_late_row_before_the_span_grows_it_downwards() -> None:
    days, _ = work(D, D + 9, [(1, D - 3, "installs")])
    assert days == [(D - 1, ALL, "earlier"), (D - 2, ALL, "earlier"), (D - 3, ALL, "earlier")]


def test_marks_past_the_horizon_or_their_tables_retention_are_dropped() -> None:
    last = D + 9
    days, dropped = work(last - 200, last, [(1, last - HORIZON_DAYS - 5, "installs"),  # before the horizon
                                            (2, last - 100, "audit_log"),  # audit rows kept 90 days: pruned
                                            (3, last - 100, "skan_postbacks")])  # kept 180 days: rolled again
    assert dropped == [1, 2] and days == [(last - 100, ["skan_postbacks"], "stale")]
