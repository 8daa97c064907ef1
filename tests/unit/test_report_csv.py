"""format=csv of the report (services/admin/api/reports.py): one long table, a row per figure, formulas defused,
and the attachment's file name."""

from __future__ import annotations

import csv
import io
from typing import Any

from services.admin.api.reports import CSV_COLUMNS, report_csv, report_filename

DAY = 86_400_000
MARCH_1 = 1772323200000  # 2026-03-01T00:00:00Z


def report(**sections: dict[str, Any]) -> dict[str, Any]:
    empty = {"keys": [], "rows": [], "totals": {}}
    return {"app_id": "app_a", "from_ms": MARCH_1, "to_ms": MARCH_1 + 7 * DAY, "group_by": "day",
            **{name: sections.get(name, empty) for name in ("installs", "conversions", "forwards", "skan")}}


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_one_row_per_figure_with_the_section_and_its_keys() -> None:
    text = report_csv(report(
        installs={"keys": ["day", "attributed", "network", "campaign"], "rows": [
            {"day": "2026-03-01", "attributed": False, "network": None, "campaign": None, "installs": 3,
             "reinstalls": 0}]},
        conversions={"keys": ["event_name"], "rows": [
            {"event_name": "purchase", "events": 2, "delivered": 1, "revenue": None}]},
        skan={"keys": ["ad_network_id"], "rows": [
            {"ad_network_id": "net1.skadnetwork", "events": 4, "revenue": {"USD": 9.5, "EUR": -1.25}}]},
    ))
    assert text.splitlines()[0] == ",".join(CSV_COLUMNS)
    assert text.endswith("\r\n")
    found = [(r["section"], r["day"], r["attributed"], r["network"], r["event_name"], r["currency"], r["metric"],
              r["value"]) for r in rows(text)]
    assert found == [
        ("installs", "2026-03-01", "false", "", "", "", "installs", "3"),
        ("installs", "2026-03-01", "false", "", "", "", "reinstalls", "0"),
        ("conversions", "", "", "", "purchase", "", "events", "2"),
        ("conversions", "", "", "", "purchase", "", "delivered", "1"),  # revenue: not recorded, no row
        ("skan", "", "", "net1.skadnetwork", "", "", "events", "4"),
        ("skan", "", "", "net1.skadnetwork", "", "EUR", "revenue", "-1.25"),  # a refund stays a number
        ("skan", "", "", "net1.skadnetwork", "", "USD", "revenue", "9.5"),
    ]


def test_text_a_spreadsheet_would_run_is_defused() -> None:
    text = report_csv(report(installs={"keys": ["network", "campaign"], "rows": [
        {"network": "meta", "campaign": '=HYPERLINK("http://x","y")', "installs": 1},
        {"network": "+tiktok", "campaign": "@sum", "installs": 2},
        {"network": "-x", "campaign": "a,b\n\"c\"", "installs": 3}]}))
    found = [(r["network"], r["campaign"]) for r in rows(text)]
    assert found == [("meta", "'=HYPERLINK(\"http://x\",\"y\")"), ("'+tiktok", "'@sum"), ("'-x", "a,b\n\"c\"")]


def test_the_file_name_says_the_app_the_days_and_the_grouping() -> None:
    assert report_filename(report()) == "apprefer-report-app_a-2026-03-01-to-2026-03-07-by-day.csv"
    odd = {**report(), "app_id": 'a"b/c', "from_ms": MARCH_1 + 5, "to_ms": MARCH_1 + DAY + 7, "group_by": "network"}
    assert report_filename(odd) == f"apprefer-report-a_b_c-{MARCH_1 + 5}-to-{MARCH_1 + DAY + 6}-by-network.csv"
