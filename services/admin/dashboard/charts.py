"""Charts for the dashboard, drawn on the server: a stacked bar chart as inline SVG, the same figures as an HTML
table (what a screen reader, a text browser or a copy-paste gets), and the adapter from an app's report.

Pure functions: figures in, markup out. The dashboard's Content-Security-Policy is `default-src 'self'`, so the
SVG carries no `style` attribute, no `<style>` element, no script and no event handler: colours and lines are
presentation attributes (`fill`, `stroke`), and every element the page's stylesheet may restyle has a `class`.
Every text that reaches the markup (categories, series names: network and campaign names are user data, the title)
is escaped, and characters XML cannot carry are replaced, so the SVG is well-formed whatever the names hold.

Values: counts and sums, so a negative, NaN or infinite value is refused (ValueError naming the series and the
category) rather than drawn: it is a bug upstream, and a clamped bar would hide it.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from markupsafe import Markup, escape

from services.admin.stores.reports import DAY_MS, day_of

# Okabe & Ito's colour-blind-safe palette, its two light colours (orange, sky blue) replaced by darker ones, so
# that each has at least 3:1 contrast on white (WCAG 1.4.11, non-text contrast). A series' colour is its place in
# the order given: past eight series the colours repeat (the legend and the table still tell them apart).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#B8860B", "#332288", "#999933", "#882255")
TEXT_COLOUR = "#1F2328"
GRID_COLOUR = "#D0D7DE"
AXIS_COLOUR = "#57606A"
FONT_SIZE = 11
CHAR_WIDTH = 6.6  # px per character at FONT_SIZE: an estimate (no font metrics on the server), generous for digits
LEGEND_LABEL_CHARS = 28  # longer names are cut in the legend (the whole name in its <title> and in the table)
LEGEND_ROW = 18
TICKS_WANTED = 5
ORGANIC = "organic"
UNKNOWN_NETWORK = "unknown"  # an attributed install without a network: not written by this project, shown apart
# Margins of the plot area inside the SVG: room for the y tick labels on the left and the x labels below.
_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 12, 22, 28
# Characters XML 1.0 cannot hold (C0 controls but tab/newline/CR, lone surrogates, U+FFFE/U+FFFF).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_SUFFIXES = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k"))


def stacked_bars(categories: Sequence[str], series: Mapping[str, Sequence[float]], *, title: str, unit: str = "",
                 width: int = 720, height: int = 260) -> Markup:
    """One stacked bar per category (a day), one segment per series (a network), the first series at the bottom.

    `width` x `height` is the plot with its axes; the legend adds its rows below. The y axis is rounded ticks from
    0 (labels like 1.2M); x labels are thinned to those that fit, the first always shown. No categories or no
    series: the chart says "No data". ValueError for a negative, NaN or infinite value, or a series whose length
    is not the categories'.
    """
    figures = _checked(categories, series)
    names = list(figures)
    ident = _ident(title, categories, figures)
    legend = _legend_rows(names, width) if categories else []
    total_height = height + (len(legend) * LEGEND_ROW + 8 if legend else 0)
    totals = [sum(figures[name][i] for name in names) for i in range(len(categories))]
    if not all(math.isfinite(total) for total in totals):
        raise ValueError("the bars' totals are too large to draw")
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-stacked-bars" role="img" '
             f'width="{width}" height="{total_height}" viewBox="0 0 {width} {total_height}" '
             f'aria-labelledby="{ident}-title {ident}-desc" font-family="system-ui, sans-serif" '
             f'font-size="{FONT_SIZE}" fill="{TEXT_COLOUR}">',
             f'<title id="{ident}-title">{_text(title)}</title>',
             f'<desc id="{ident}-desc">{_text(_description(categories, names, totals, unit))}</desc>']
    if not categories or not names:
        parts.append(f'<text class="chart-empty" x="{width / 2:g}" y="{height / 2:g}" text-anchor="middle">'
                     'No data</text></svg>')
        return Markup("".join(parts))
    plot_w, plot_h = max(1, width - _LEFT - _RIGHT), max(1, height - _TOP - _BOTTOM)
    ticks = nice_ticks(max(totals), whole=all(v == int(v) for values in figures.values() for v in values))
    scale = plot_h / ticks[-1]
    bottom = _TOP + plot_h
    parts.append('<g class="chart-y-axis" text-anchor="end">')
    for tick in ticks:
        y = bottom - tick * scale
        parts.append(f'<line x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{y:.2f}" y2="{y:.2f}" stroke="{GRID_COLOUR}" '
                     f'stroke-width="1"/><text x="{_LEFT - 6}" y="{y + 4:.2f}">{short_number(tick)}</text>')
    if unit:
        parts.append(f'<text class="chart-unit" x="{_LEFT - 6}" y="{_TOP - 10}">{_text(unit)}</text>')
    parts.append("</g>")
    band = plot_w / len(categories)
    bar_w = band * 0.8 if band >= 3 else band  # thin bars: no gap, or they vanish
    parts.append('<g class="chart-bars" shape-rendering="crispEdges">')
    for i, category in enumerate(categories):
        x = _LEFT + i * band + (band - bar_w) / 2
        breakdown = "; ".join(f"{name} {_full_number(figures[name][i])}" for name in names if figures[name][i])
        parts.append(f'<g class="chart-bar" data-category="{_text(category)}"><title>{_text(category)}: '
                     f'{_text(_full_number(totals[i]))}{_text(" " + unit if unit else "")}'
                     f'{_text("; " + breakdown if breakdown else "")}</title>')
        top = float(bottom)
        for index, name in enumerate(names):
            value = figures[name][i]
            if not value:
                continue
            segment = value * scale
            top -= segment
            parts.append(f'<rect class="chart-series-{index % len(PALETTE)}" x="{x:.2f}" y="{top:.2f}" '
                         f'width="{bar_w:.2f}" height="{segment:.2f}" fill="{_colour(index)}" '
                         f'data-series="{_text(name)}" data-value="{_plain_number(value)}"/>')
        parts.append("</g>")
    parts.append("</g>")
    parts.append(f'<line class="chart-x-axis" x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{bottom}" y2="{bottom}" '
                 f'stroke="{AXIS_COLOUR}" stroke-width="1"/>')
    parts.append('<g class="chart-x-labels" text-anchor="middle">')
    every = label_step(categories, band)
    for i in range(0, len(categories), every):
        centre = _LEFT + (i + 0.5) * band
        if i and centre + len(categories[i]) * CHAR_WIDTH / 2 > width:  # it would be cut at the right edge
            break
        parts.append(f'<text x="{centre:.2f}" y="{bottom + 16}">{_text(categories[i])}</text>')
    parts.append("</g>")
    parts.append('<g class="chart-legend">')
    for row, entries in enumerate(legend):
        y = height + 4 + row * LEGEND_ROW
        for index, x in entries:
            name = names[index]
            shown = name if len(name) <= LEGEND_LABEL_CHARS else name[:LEGEND_LABEL_CHARS - 1] + "\u2026"
            parts.append(f'<g class="chart-legend-entry" data-series="{_text(name)}"><title>{_text(name)}</title>'
                         f'<rect class="chart-series-{index % len(PALETTE)}" x="{x:.2f}" y="{y}" width="12" '
                         f'height="12" fill="{_colour(index)}"/>'
                         f'<text x="{x + 16:.2f}" y="{y + 10}">{_text(shown)}</text></g>')
    parts.append("</g></svg>")
    return Markup("".join(parts))


def chart_table(categories: Sequence[str], series: Mapping[str, Sequence[float]], *, unit: str = "",
                caption: str = "", category_label: str = "Day") -> Markup:
    """The chart's figures as an accessible table: a row per category (its header cell `scope="row"`), a column
    per series and a total, the totals of each series in the footer. Same checks (and ValueError) as the chart."""
    figures = _checked(categories, series)
    names = list(figures)
    parts = ['<table class="chart-table">']
    if caption or unit:
        parts.append(f"<caption>{_text(caption)}{_text(f' ({unit})' if caption and unit else unit)}</caption>")
    header = "".join(f'<th scope="col">{_text(name)}</th>' for name in names)
    parts.append(f'<thead><tr><th scope="col">{_text(category_label)}</th>{header}<th scope="col">Total</th>'
                 "</tr></thead><tbody>")
    if not categories:
        parts.append(f'<tr><td colspan="{len(names) + 2}">No data</td></tr>')
    for i, category in enumerate(categories):
        cells = "".join(f'<td class="num">{_full_number(figures[name][i])}</td>' for name in names)
        total = sum(figures[name][i] for name in names)
        parts.append(f'<tr><th scope="row">{_text(category)}</th>{cells}'
                     f'<td class="num">{_full_number(total)}</td></tr>')
    parts.append("</tbody>")
    if categories:
        sums = [sum(figures[name]) for name in names]
        cells = "".join(f'<td class="num">{_full_number(value)}</td>' for value in sums)
        parts.append(f'<tfoot><tr><th scope="row">Total</th>{cells}'
                     f'<td class="num">{_full_number(sum(sums))}</td></tr></tfoot>')
    parts.append("</table>")
    return Markup("".join(parts))


def report_days(report: Mapping[str, Any]) -> list[str]:
    """Every UTC day of an app report's range [from_ms, to_ms) (ReportsStore.report), days without data too."""
    first, last = report["from_ms"] // DAY_MS, (report["to_ms"] - 1) // DAY_MS
    return [day_of(number) for number in range(first, last + 1)]


def per_day(days: Sequence[str], rows: Iterable[Mapping[str, Any]],
            figures: Callable[[Mapping[str, Any]], Mapping[str, float]]) -> dict[str, list[float]]:
    """{series: [amount per day]}: each row's `figures` (amounts by series) added to the row's `day`; a row outside
    `days` (outside the range the report says it covers) is not ours to draw."""
    position = {day: i for i, day in enumerate(days)}
    series: dict[str, list[float]] = {}
    for row in rows:
        at = position.get(row.get("day") or "")
        if at is None:
            continue
        for name, amount in figures(row).items():
            series.setdefault(name, [0.0] * len(days))[at] += amount
    return series


def installs_by_day(report: Mapping[str, Any]) -> tuple[list[str], dict[str, list[float]]]:
    """An app's report (ReportsStore.report or GET /admin/v1/apps/{app_id}/report, group_by=day) as the chart's
    input: every UTC day of the report's range (days without installs too, at 0), and the installs of each day per
    series: "organic" (not attributed) first, then each network in name order, its campaigns summed.
    ValueError for a report not grouped by day."""
    installs = report["installs"]
    if report.get("group_by") != "day" or "day" not in installs["keys"]:
        raise ValueError(f"installs_by_day needs a report with group_by=day, not {report.get('group_by')!r}")
    days = report_days(report)
    counts = per_day(days, installs["rows"], lambda row: {
        (row["network"] or UNKNOWN_NETWORK) if row["attributed"] else ORGANIC: row["installs"]})
    organic = counts.pop(ORGANIC, [0.0] * len(days))
    return days, {ORGANIC: organic, **{name: counts[name] for name in sorted(counts)}}


# ------------------------------------------------------------------------------------------------ the pieces


def nice_ticks(largest: float, *, whole: bool = False) -> list[float]:
    """The y axis: 0 up to the first round figure at or above `largest`, in about TICKS_WANTED steps of 1, 2, 2.5
    or 5 times a power of ten (0 to 1 when everything is 0). `whole`: counts, so no step below 1."""
    if largest <= 0:
        return [0.0, 1.0]
    raw = largest / (TICKS_WANTED - 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    if whole:
        step = max(1.0, step if step < 1 or step == int(step) else 2 * step)  # 2.5 -> 5: no 7.5 between counts
    steps = math.ceil(largest / step - 1e-9)
    return [round(k * step, 10) for k in range(steps + 1)]


def short_number(value: float) -> str:
    """A tick label: 950, 2.5, 1.2k, 1.2M, 3B; beyond thousands of trillions, 1.2e+18."""
    rounded = float(f"{value:.3g}")  # first, so that 999,999 is 1M, not 1e+03k
    if abs(rounded) >= 1e15:
        return f"{value:.2g}"
    for size, suffix in _SUFFIXES:
        if abs(rounded) >= size:
            return f"{rounded / size:.3g}{suffix}"
    return f"{rounded:.3g}"


def label_step(categories: Sequence[str], band: float) -> int:
    """Show every n-th x label so that labels do not overlap: the widest label plus a gap per shown one."""
    widest = max((len(c) for c in categories), default=0) * CHAR_WIDTH + 8
    return max(1, math.ceil(widest / band)) if band > 0 else len(categories) or 1


def _checked(categories: Sequence[str], series: Mapping[str, Sequence[float]]) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {}
    for name, values in series.items():
        if len(values) != len(categories):
            raise ValueError(f"series {name!r} has {len(values)} values for {len(categories)} categories")
        checked = [float(v) for v in values]
        for category, value in zip(categories, checked, strict=True):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"series {name!r}, {category!r}: {value!r} is not a count (finite, 0 or more)")
        figures[str(name)] = checked
    return figures


def _legend_rows(names: Sequence[str], width: int) -> list[list[tuple[int, float]]]:
    """The legend's entries (series index, x) in rows that fit the width."""
    rows: list[list[tuple[int, float]]] = []
    x, limit = float(_LEFT), width - _RIGHT
    for index, name in enumerate(names):
        entry = 16 + min(len(name), LEGEND_LABEL_CHARS) * CHAR_WIDTH + 14
        if not rows or (x + entry > limit and rows[-1]):
            rows.append([])
            x = float(_LEFT)
        rows[-1].append((index, x))
        x += entry
    return rows


def _description(categories: Sequence[str], names: Sequence[str], totals: Sequence[float], unit: str) -> str:
    if not categories or not names:
        return "No data to show."
    span = categories[0] if len(categories) == 1 else f"{categories[0]} to {categories[-1]}"
    unit_text = f" {unit}" if unit else ""
    return (f"Stacked bars, one per category ({len(categories)}: {span}), one segment per series "
            f"({', '.join(names)}). Total {_full_number(sum(totals))}{unit_text}; the largest bar "
            f"{_full_number(max(totals))}{unit_text}. The table below the chart holds every figure.")


def _ident(title: str, categories: Sequence[str], figures: Mapping[str, Sequence[float]]) -> str:
    """An id for the title and description, the same for the same chart (pure), different for different ones
    on one page."""
    digest = hashlib.blake2b(repr((title, list(categories), list(figures.items()))).encode(errors="replace"),
                             digest_size=6).hexdigest()
    return f"chart-{digest}"


def _full_number(value: float) -> str:
    if not math.isfinite(value) or abs(value) >= 1e15:  # a sum past what a table should spell out
        return f"{value:.6g}"
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _plain_number(value: float) -> str:
    """For a data- attribute: the value itself, no separators, read back by float()."""
    return str(int(value)) if value == int(value) and abs(value) < 1e15 else repr(value)


def _colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _text(value: object) -> str:
    """Escaped for XML text and attribute values alike, with characters XML cannot hold replaced."""
    return str(escape(_NOT_XML.sub("\ufffd", str(value))))
