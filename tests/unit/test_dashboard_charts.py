"""The dashboard's server-drawn charts (services/admin/dashboard/charts.py): the SVG parsed back with xml.etree
(bars proportional to their values, stacked in series order, hostile names escaped, nothing the page's CSP would
block, a legend entry per series), the table of the same figures, and the adapter from a real report."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from itertools import pairwise
from pathlib import Path

import pytest
from sqlalchemy import insert

from services.admin.dashboard.charts import (
    ORGANIC,
    PALETTE,
    chart_table,
    installs_by_day,
    nice_ticks,
    short_number,
    stacked_bars,
)
from services.admin.stores.reports import DAY_MS, ReportRequest, ReportsStore
from shared.db.migrate import upgrade
from shared.db.models import App, Install
from shared.db.session import make_engine, make_sessionmaker

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert("x")</script>&\'"'


def parsed(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))


def bars(svg: ET.Element) -> list[ET.Element]:
    return svg.findall(f"./{SVG}g[@class='chart-bars']/{SVG}g")


def segments(bar: ET.Element) -> list[tuple[str, float, float, float]]:
    """(series, value, y, height) of each segment of one bar, in document order."""
    return [(rect.get("data-series", ""), float(rect.get("data-value", "nan")), float(rect.get("y", "nan")),
             float(rect.get("height", "nan"))) for rect in bar.findall(f"{SVG}rect")]


def test_bar_heights_are_proportional_and_stacked_in_series_order() -> None:
    svg = parsed(stacked_bars(["d1", "d2", "d3"], {"organic": [10, 0, 5], "meta": [30, 20, 0], "tiktok": [0, 20, 5]},
                              title="Installs", unit="installs"))
    assert svg.tag == f"{SVG}svg" and svg.get("role") == "img"
    assert svg.find(f"{SVG}title") is not None and svg.find(f"{SVG}title").text == "Installs"  # type: ignore[union-attr]
    assert "installs" in (svg.find(f"{SVG}desc").text or "")  # type: ignore[union-attr]
    found = bars(svg)
    assert [bar.get("data-category") for bar in found] == ["d1", "d2", "d3"]
    per_unit = [height / value for bar in found for _, value, _, height in segments(bar)]
    assert max(per_unit) - min(per_unit) < 0.01, per_unit  # every segment: the same pixels per install (+- rounding)
    for bar in found:
        drawn = segments(bar)
        # The first series at the bottom, each next one on top of it, no gap.
        order = ["organic", "meta", "tiktok"]
        assert [name for name, *_ in drawn] == [n for n in order if n in {name for name, *_ in drawn}]
        for (_, _, y_below, _), (_, _, y_above, h_above) in pairwise(drawn):
            assert y_above + h_above == pytest.approx(y_below, abs=0.02)
    # Zero segments are not drawn: d2 has meta and tiktok only, the same height each.
    assert [(name, value) for name, value, *_ in segments(found[1])] == [("meta", 20.0), ("tiktok", 20.0)]
    totals = [sum(h for *_, h in segments(bar)) for bar in found]
    assert totals[0] == pytest.approx(totals[1]) and totals[2] == pytest.approx(totals[0] / 4, abs=0.02)
    # The tallest bars (40) reach the top tick exactly: 0 to 40 in steps of 10.
    ticks = [t.text for t in svg.findall(f"./{SVG}g[@class='chart-y-axis']/{SVG}text")]
    assert ticks == ["0", "10", "20", "30", "40", "installs"]
    top = min(float(line.get("y1", "nan")) for line in svg.findall(f"./{SVG}g[@class='chart-y-axis']/{SVG}line"))
    assert segments(found[0])[-1][2] == pytest.approx(top)


def test_colours_follow_the_series_order_and_the_legend_names_each_series() -> None:
    names = [f"net{i}" for i in range(len(PALETTE) + 2)]
    svg = parsed(stacked_bars(["d1"], {name: [1] for name in names}, title="t"))
    colours = {rect.get("data-series"): rect.get("fill") for rect in bars(svg)[0].findall(f"{SVG}rect")}
    assert colours == {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}
    legend = svg.findall(f".//{SVG}g[@class='chart-legend-entry']")
    assert [entry.get("data-series") for entry in legend] == names
    for entry, name in zip(legend, names, strict=True):
        assert entry.find(f"{SVG}rect").get("fill") == colours[name]  # type: ignore[union-attr]
        assert entry.find(f"{SVG}text").text == name  # type: ignore[union-attr]
    # The same input, the same chart (pure): ids included.
    assert stacked_bars(["d1"], {name: [1] for name in names}, title="t") == stacked_bars(
        ["d1"], {name: [1] for name in names}, title="t")


def test_a_hostile_series_name_is_text_not_markup() -> None:
    markup = stacked_bars([HOSTILE], {HOSTILE: [3], "x\x00y\x1b": [1]}, title=HOSTILE, unit=HOSTILE)
    assert "<script" not in markup
    svg = parsed(markup)  # still well-formed XML, control characters included
    assert not svg.findall(f".//{SVG}script")
    assert svg.find(f"{SVG}title").text == HOSTILE  # type: ignore[union-attr]
    assert segments(bars(svg)[0])[0][0] == HOSTILE
    assert bars(svg)[0].get("data-category") == HOSTILE
    legend = [entry.get("data-series") for entry in svg.findall(f".//{SVG}g[@class='chart-legend-entry']")]
    assert legend == [HOSTILE, "x\ufffdy\ufffd"]
    table = chart_table([HOSTILE], {HOSTILE: [3]}, unit=HOSTILE, caption=HOSTILE)
    assert "<script" not in table
    assert ET.fromstring(str(table)).find("./thead/tr/th[2]").text == HOSTILE  # type: ignore[union-attr]


def test_nothing_the_content_security_policy_would_block() -> None:
    markup = stacked_bars([f"2026-01-{d:02}" for d in range(1, 31)], {"organic": [1.5] * 30, "meta": [2] * 30},
                          title="t", unit="installs")
    svg = parsed(markup)
    for element in svg.iter():
        assert element.tag not in (f"{SVG}style", f"{SVG}script", f"{SVG}foreignObject")
        assert "style" not in element.attrib, element.tag
        assert not [name for name in element.attrib if name.lower().startswith("on")], element.attrib
        assert not any("javascript:" in value for value in element.attrib.values())
    assert "style" not in str(chart_table(["d"], {"a": [1]}))


def test_no_categories_one_category_and_all_zeros() -> None:
    empty = parsed(stacked_bars([], {"meta": []}, title="Nothing"))
    assert empty.get("role") == "img" and not bars(empty)
    assert [t.text for t in empty.iter(f"{SVG}text")] == ["No data"]
    assert [t.text for t in parsed(stacked_bars(["d1"], {}, title="No series")).iter(f"{SVG}text")] == ["No data"]

    one = parsed(stacked_bars(["2026-05-01"], {"meta": [7]}, title="One"))
    assert len(bars(one)) == 1 and segments(bars(one)[0])[0][1] == 7
    assert [t.text for t in one.findall(f"./{SVG}g[@class='chart-x-labels']/{SVG}text")] == ["2026-05-01"]

    zeros = parsed(stacked_bars(["d1", "d2"], {"meta": [0, 0], "tiktok": [0, 0]}, title="Zeros"))
    assert [segments(bar) for bar in bars(zeros)] == [[], []]
    ticks = [t.text for t in zeros.findall(f"./{SVG}g[@class='chart-y-axis']/{SVG}text")]
    assert ticks == ["0", "1"]


@pytest.mark.parametrize("bad", [-1, math.nan, math.inf])
def test_a_value_that_is_not_a_count_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="'meta', 'd2'"):
        stacked_bars(["d1", "d2"], {"meta": [1, bad]}, title="t")
    with pytest.raises(ValueError, match="not a count"):
        chart_table(["d1", "d2"], {"meta": [1, bad]})


def test_series_of_another_length_are_refused() -> None:
    with pytest.raises(ValueError, match="2 values for 3 categories"):
        stacked_bars(["a", "b", "c"], {"meta": [1, 2]}, title="t")


def test_huge_values_get_short_tick_labels() -> None:
    svg = parsed(stacked_bars(["d1", "d2"], {"meta": [1_150_000, 300_000], "tiktok": [50_000, 0]}, title="t"))
    ticks = [t.text for t in svg.findall(f"./{SVG}g[@class='chart-y-axis']/{SVG}text")]
    assert ticks == ["0", "500k", "1M", "1.5M"]
    assert [short_number(v) for v in (0, 7, 2.5, 950, 1200, 999_999, 1.2e6, 3e9, 4.5e12, 2e18)] == [
        "0", "7", "2.5", "950", "1.2k", "1M", "1.2M", "3B", "4.5T", "2e+18"]
    assert nice_ticks(0) == [0, 1]
    assert nice_ticks(10, whole=True) == [0, 5, 10]  # counts: no 2.5 between them
    assert nice_ticks(1, whole=True) == [0, 1]
    assert nice_ticks(0.3) == pytest.approx([0, 0.1, 0.2, 0.3])
    assert nice_ticks(1e300)[-1] >= 1e300
    with pytest.raises(ValueError, match="too large"):
        stacked_bars(["d1"], {"a": [1e308], "b": [1e308]}, title="t")


def test_x_labels_are_thinned_when_there_are_many_days() -> None:
    days = [f"day-{i:04}" for i in range(400)]
    svg = parsed(stacked_bars(days, {"meta": [1] * 400}, title="t"))
    labels = svg.findall(f"./{SVG}g[@class='chart-x-labels']/{SVG}text")
    assert labels[0].text == "day-0000" and 4 <= len(labels) <= 12
    xs = [float(label.get("x", "0")) for label in labels]
    assert min(b - a for a, b in pairwise(xs)) >= len("day-0000") * 6  # no overlap
    assert xs[-1] + len("day-0000") * 6.6 / 2 <= 720  # nor cut at the right edge
    assert len(bars(svg)) == 400
    few = parsed(stacked_bars(days[:7], {"meta": [1] * 7}, title="t"))
    assert len(few.findall(f"./{SVG}g[@class='chart-x-labels']/{SVG}text")) == 7


def test_the_table_holds_every_figure_with_totals() -> None:
    table = ET.fromstring(str(chart_table(["d1", "d2"], {"organic": [1, 2], "meta": [3, 0.5]}, unit="installs",
                                          caption="Installs")))
    assert table.find("caption").text == "Installs (installs)"  # type: ignore[union-attr]
    assert [th.text for th in table.findall("./thead/tr/th")] == ["Day", "organic", "meta", "Total"]
    assert all(th.get("scope") == "col" for th in table.findall("./thead/tr/th"))
    rows = [[cell.text for cell in row] for row in table.findall("./tbody/tr")]
    assert rows == [["d1", "1", "3", "4"], ["d2", "2", "0.5", "2.5"]]
    assert [cell.get("scope") for cell in table.findall("./tbody/tr/th")] == ["row", "row"]
    assert [cell.text for cell in table.find("./tfoot/tr")] == ["Total", "3", "3.5", "6.5"]  # type: ignore[union-attr]
    empty = ET.fromstring(str(chart_table([], {"meta": []})))
    assert [td.text for td in empty.findall("./tbody/tr/td")] == ["No data"]


# ------------------------------------------------------------------------------------- from a real report


def test_installs_by_day_from_the_store_s_report(tmp_path: Path) -> None:
    """The real ReportsStore (SQLite) makes the report: the adapter reads the shape the store answers."""
    url = f"sqlite:///{tmp_path / 'charts.db'}"
    upgrade(url)
    engine = make_engine(url)
    start = 20_000 * DAY_MS  # 2024-10-04, a day boundary
    rows = [  # (day offset, attributed, network, campaign, how many)
        (0, False, None, None, 3), (0, True, "meta", "spring", 2), (0, True, "meta", "summer", 1),
        (2, True, "tiktok", None, 4), (2, False, None, None, 1), (5, True, "meta", "spring", 1)]
    installs = [{"app_id": "app_c", "device_id": f"dev-{n}-{i}", "sandbox": False, "event_id": f"ev-{n}-{i}",
                 "installed_at_ms": start + offset * DAY_MS + 3_600_000, "attributed": attributed,
                 "network": network, "campaign": campaign, "matched_by": "click_id" if attributed else None,
                 "last_install_event_id": f"ev-{n}-{i}", "last_install_at_ms": start + offset * DAY_MS}
                for n, (offset, attributed, network, campaign, count) in enumerate(rows) for i in range(count)]
    try:
        with make_sessionmaker(engine)() as session, session.begin():
            session.execute(insert(App), [{"app_id": "app_c", "name": "Charts", "platform": "ios",
                                           "created_at_ms": start}])
            session.execute(insert(Install), installs)
        report = ReportsStore(make_sessionmaker(engine), None).report(
            ReportRequest("app_c", start, start + 5 * DAY_MS))  # [day 0, day 5): the day-5 install is outside
    finally:
        engine.dispose()
    days, series = installs_by_day(report)
    assert days == ["2024-10-04", "2024-10-05", "2024-10-06", "2024-10-07", "2024-10-08"]
    assert list(series) == [ORGANIC, "meta", "tiktok"]
    assert series == {ORGANIC: [3, 0, 1, 0, 0], "meta": [3, 0, 0, 0, 0], "tiktok": [0, 0, 4, 0, 0]}
    svg = parsed(stacked_bars(days, series, title="Installs per day", unit="installs"))
    assert [sum(v for _, v, *_ in segments(bar)) for bar in bars(svg)] == [6, 0, 5, 0, 0]


def test_installs_by_day_wants_a_report_by_day() -> None:
    report = {"group_by": "network", "from_ms": 0, "to_ms": DAY_MS,
              "installs": {"keys": ["attributed", "network"], "rows": []}}
    with pytest.raises(ValueError, match="group_by=day"):
        installs_by_day(report)
    by_day = {**report, "group_by": "day", "installs": {"keys": ["day", "attributed", "network", "campaign"],
                                                        "rows": []}}
    assert installs_by_day(by_day) == (["1970-01-01"], {ORGANIC: [0.0]})
