"""The report's query parameters (services/admin/api/reports.py parse_report_query): ranges, defaults, and the
400 naming the parameter."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from multidict import MultiDict

from services.admin.api.reports import parse_report_query
from services.admin.stores.reports import ReportRequest
from shared.errors import InputError

DAY = 86_400_000
NOW = int(datetime(2026, 3, 10, 15, 30, tzinfo=UTC).timestamp() * 1000)
MIDNIGHT_11 = int(datetime(2026, 3, 11, tzinfo=UTC).timestamp() * 1000)


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def parse(**query: str) -> tuple[ReportRequest, str]:
    return parse_report_query("app_a", query, NOW)


def test_defaults_are_the_last_seven_days_today_included_by_day_in_json() -> None:
    assert parse() == (ReportRequest("app_a", MIDNIGHT_11 - 7 * DAY, MIDNIGHT_11, "day"), "json")


def test_dates_include_the_whole_last_day_and_epoch_ms_are_taken_as_they_are() -> None:
    asked, _ = parse(**{"from": "2026-03-01", "to": "2026-03-03"})
    assert (asked.from_ms, asked.to_ms) == (ms("2026-03-01"), ms("2026-03-04"))
    asked, _ = parse(**{"from": "1772323200123", "to": "1772323200999"})
    assert (asked.from_ms, asked.to_ms) == (1772323200123, 1772323200999)
    asked, _ = parse(**{"from": "2026-03-01"})  # one bound given: 7 days from it
    assert (asked.from_ms, asked.to_ms) == (ms("2026-03-01"), ms("2026-03-08"))
    asked, _ = parse(to="2026-03-07")  # or up to it
    assert (asked.from_ms, asked.to_ms) == (ms("2026-03-01"), ms("2026-03-08"))


@pytest.mark.parametrize("group_by", ["day", "network", "campaign", "country"])
@pytest.mark.parametrize("answer_format", ["json", "csv"])
def test_every_group_by_and_format(group_by: str, answer_format: str) -> None:
    asked, chosen = parse(group_by=group_by, format=answer_format)
    assert (asked.group_by, chosen) == (group_by, answer_format)


@pytest.mark.parametrize(("query", "field"), [
    ({"group_by": "week"}, "group_by"),
    ({"group_by": ""}, "group_by"),
    ({"format": "xlsx"}, "format"),
    ({"from": "yesterday"}, "from"),
    ({"from": "2026-3-1"}, "from"),
    ({"from": "-5"}, "from"),
    ({"to": "2026-02-30"}, "to"),
    ({"to": "1e12"}, "to"),
    ({"to": "9999-12-31"}, "to"),  # near the end of datetime
    ({"from": "253401609600001"}, "from"),
    ({"to": "999999999999999"}, "to"),
    ({"from": "9999999999999999"}, "from"),
    ({"from": "2026-03-05", "to": "2026-03-04"}, "from"),  # the 5th is after the whole 4th
    ({"from": "1000", "to": "1000"}, "from"),  # empty
    ({"from": "2025-03-01", "to": "2026-03-02"}, "to"),  # 367 days
    ({"app_id": "app_b"}, "app_id"),
    ({"groupby": "day"}, "groupby"),
])
def test_a_bad_parameter_is_named(query: dict[str, str], field: str) -> None:
    with pytest.raises(InputError) as raised:
        parse(**query)
    assert raised.value.field == field


def test_a_repeated_parameter_is_refused() -> None:
    with pytest.raises(InputError) as raised:
        parse_report_query("app_a", MultiDict([("group_by", "day"), ("group_by", "network")]), NOW)
    assert raised.value.field == "group_by"


def test_a_year_is_allowed() -> None:
    asked, _ = parse(**{"from": "2025-03-02", "to": "2026-03-02"})
    assert asked.to_ms - asked.from_ms == 366 * DAY
