"""Small, dependency-free HTML reports with inline SVG charts (they open anywhere, Vertex included)."""

from __future__ import annotations

import html
from typing import Iterable, Sequence

PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756")

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f4f4f4}
td.l,th.l{text-align:left}.bad{color:#b00020;font-weight:600}.warn{color:#a15c00}.ok{color:#1b7f3b}
.grid{display:flex;flex-wrap:wrap;gap:18px}.card{border:1px solid #e3e3e3;border-radius:6px;padding:10px}
.card h3{font-size:14px;margin:0 0 6px 0}.card .muted{max-width:440px}.muted{color:#666;font-size:12px}
"""


def esc(value) -> str:
    return html.escape(str(value))


def fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return esc(value)


def page(title: str, body: Iterable[str]) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{esc(title)}</h1>{''.join(body)}</body></html>")


def table(headers: Sequence[str], rows: Iterable[Sequence], left: int = 1) -> str:
    head = "".join(f"<th class='{'l' if i < left else ''}'>{esc(h)}</th>" for i, h in enumerate(headers))
    def td(i: int, cell) -> str:
        return f"<td class='{'l' if i < left else ''}'>{cell if isinstance(cell, Markup) else fmt(cell)}</td>"

    body = "".join("<tr>" + "".join(td(i, cell) for i, cell in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


class Markup(str):
    """Text already escaped: inserted into tables as-is."""


CHAR_W = 5.6  # width of a character of the 9-10 px label font, for layout


def nice(value: float) -> str:
    """A number for an axis or a bin: few digits, thousands separated, no exponent below 1e9."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1e9 or magnitude < 1e-4:
        return f"{value:.3g}"
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 1:
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    return f"{value:.3g}"


def nice_step(span: float, count: int = 4, integer: bool = False) -> float:
    """A step of 1, 2, 2.5 or 5 times a power of ten giving about `count` intervals over span."""
    import math

    raw = span / count if span > 0 else 1.0
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    # a count has no fractional values: its ticks must not suggest any
    return max(1.0, float(math.ceil(step))) if integer else step


def _ticks(top: float, count: int = 4, integer: bool = False) -> list[float]:
    """Round ticks from 0 up to the first tick at or above top (the axis ends on a labelled tick)."""
    step = nice_step(top, count, integer)
    ticks = [0.0]
    while ticks[-1] < top - 1e-12 * max(top, 1.0):
        ticks.append(round(ticks[-1] + step, 12))
    return ticks if len(ticks) > 1 else [0.0, step]


def ticks_between(low: float, high: float, count: int = 5) -> list[float]:
    """Round ticks inside [low, high] (a linear axis that need not start at 0)."""
    import math

    step = nice_step(high - low, count)
    first = math.ceil(low / step) * step
    return [round(first + i * step, 12) for i in range(int((high - first) / step + 1e-9) + 1)]


def bar_chart(labels: Sequence[str], series: Sequence[Sequence[float]], names: Sequence[str] = (),
              width: int = 360, height: int = 160, rotate_labels: bool = False, note: str = "",
              colors: Sequence[str] = (), integer: bool = False, label_peak: bool = False) -> str:
    """Grouped bars (one group per label, one bar per series) with a y axis and full category labels.

    Labels are never cut: when they do not fit side by side they are written vertically, and the
    chart grows to hold the longest; past two dozen groups every n-th label is written (every bar
    keeps its tooltip). `colors` fixes each series' colour (so a side keeps its colour across charts),
    `integer` keeps the axis on whole numbers (counts), `label_peak` writes the highest bar's value.
    """
    if not labels:
        return "<p class='muted'>no data</p>"
    labels = [str(label) for label in labels]
    peak = max((max(s) if len(s) else 0) for s in series) or 1.0
    ticks = _ticks(peak, integer=integer)
    top = ticks[-1]
    colors = list(colors) or [PALETTE[j % len(PALETTE)] for j in range(len(series))]
    left = 40
    group_w = (width - left - 6) / len(labels)
    longest = max(len(label) for label in labels)
    vertical = rotate_labels or longest * CHAR_W > group_w * 0.95
    pad_bottom = int(longest * CHAR_W + 10) if vertical else 18
    # the legend on one row when it fits (7 px a character at 11 px, 24 px per swatch and gap)
    legend_x = [left + 4]
    for name in names:
        legend_x.append(legend_x[-1] + 24 + int(len(str(name)) * 7))
    one_row = bool(names) and legend_x[-1] <= width - 4
    legend_h = (18 if one_row else 14 * len(names) + 4) if names else 0
    plot_top = 4 + legend_h + (12 if label_peak else 0)
    plot_h = max(height - pad_bottom - plot_top, 60)
    total_h = plot_top + plot_h + pad_bottom
    bar_w = max(group_w / (len(series) + 0.5), 1.0)
    parts = [f"<svg width='{width}' height='{total_h}' xmlns='http://www.w3.org/2000/svg' class='chart'>"]
    for tick in ticks:
        y = plot_top + plot_h - plot_h * tick / top
        parts.append(f"<line x1='{left - 3}' x2='{width - 4}' y1='{y:.1f}' y2='{y:.1f}' stroke='#eee'/>"
                     f"<text x='{left - 5}' y='{y + 3:.1f}' font-size='9' text-anchor='end' class='tick'>"
                     f"{esc(nice(tick))}</text>")
    parts.append(f"<line x1='{left}' x2='{left}' y1='{plot_top}' y2='{plot_top + plot_h}' stroke='#999'/>")
    step = max(1, -(-len(labels) // 24))
    for i, label in enumerate(labels):
        for j, values in enumerate(series):
            value = values[i] if i < len(values) else 0
            h = plot_h * value / top
            x = left + 2 + i * group_w + j * bar_w
            opacity = "0.85" if len(series) == 1 else "0.6"
            parts.append(f"<rect class='mark' x='{x:.1f}' y='{plot_top + plot_h - h:.1f}' width='{bar_w:.1f}' "
                         f"height='{h:.1f}' fill='{colors[j]}' fill-opacity='{opacity}'>"
                         f"<title>{esc(label)}: {fmt(value)}{' (' + esc(names[j]) + ')' if names else ''}</title></rect>")
            if label_peak and value == peak and j == 0:
                label_peak = False  # the first highest bar only
                text = f"peak {label}: {nice(value)}"
                anchor_x = min(max(x + bar_w / 2, left + len(text) * CHAR_W / 2), width - 4 - len(text) * CHAR_W / 2)
                parts.append(f"<text class='label peak' x='{anchor_x:.1f}' y='{plot_top + plot_h - h - 4:.1f}' "
                             f"font-size='9' text-anchor='middle'>{esc(text)}<title>{esc(text)}</title></text>")
        if i % step == 0 or i == len(labels) - 1:
            x = left + 2 + i * group_w + group_w / 2
            y = plot_top + plot_h + 6
            if vertical:
                parts.append(f"<text class='label' x='{x:.1f}' y='{y}' font-size='9' text-anchor='end' "
                             f"dominant-baseline='middle' transform='rotate(-90 {x:.1f} {y})'>{esc(label)}"
                             f"<title>{esc(label)}</title></text>")
            else:
                parts.append(f"<text class='label' x='{x:.1f}' y='{y + 8}' font-size='9' text-anchor='middle'>"
                             f"{esc(label)}<title>{esc(label)}</title></text>")
    for j, name in enumerate(names):
        x, y = (legend_x[j], 4) if one_row else (left + 4, 4 + 14 * j)
        parts.append(f"<rect x='{x}' y='{y}' width='10' height='10' fill='{colors[j]}'/>"
                     f"<text class='legend' x='{x + 14}' y='{y + 9}' font-size='11'>{esc(name)}</text>")
    parts.append("</svg>")
    caption = f"<div class='muted'>{esc(note)}</div>" if note else ""
    return "".join(parts) + caption


def histogram(edges: Sequence[float], series: Sequence[Sequence[float]], names: Sequence[str] = (),
              width: int = 360, height: int = 160, note: str = "", **options) -> str:
    """Histogram(s) over shared bin edges; each bin labelled by its range in readable numbers."""
    labels = [f"{nice(edges[i])} to {nice(edges[i + 1])}" for i in range(len(edges) - 1)]
    return bar_chart(labels, series, names, width, height, note=note, **options)


def line_chart(curves: Sequence[tuple[str, Sequence[float], Sequence[float]]], x_label: str, y_label: str,
               size: int = 300, diagonal: bool = True) -> str:
    """Curves on [0, 1] x [0, 1] (ROC), with ticks and a legend naming each curve."""
    left, bottom, top_pad = 42, 34, 8
    plot = size - left - 10
    legend_h = 14 * len(curves)
    height = top_pad + plot + bottom + legend_h
    width = max(size, left + 16 + int(max((len(c[0]) for c in curves), default=0) * 6.6) + 10)
    parts = [f"<svg width='{width}' height='{height}' xmlns='http://www.w3.org/2000/svg' class='chart'>",
             f"<rect x='{left}' y='{top_pad}' width='{plot}' height='{plot}' fill='none' stroke='#999'/>"]
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        x, y = left + tick * plot, top_pad + plot - tick * plot
        parts.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{top_pad + plot}' y2='{top_pad + plot + 4}' stroke='#999'/>"
                     f"<text class='tick' x='{x:.1f}' y='{top_pad + plot + 14}' font-size='9' text-anchor='middle'>"
                     f"{tick:g}</text>"
                     f"<line x1='{left - 4}' x2='{left}' y1='{y:.1f}' y2='{y:.1f}' stroke='#999'/>"
                     f"<text class='tick' x='{left - 6}' y='{y + 3:.1f}' font-size='9' text-anchor='end'>{tick:g}</text>")
    if diagonal:
        parts.append(f"<line x1='{left}' y1='{top_pad + plot}' x2='{left + plot}' y2='{top_pad}' stroke='#ccc' "
                     "stroke-dasharray='4'/>")
    for k, (name, xs, ys) in enumerate(curves):
        points = " ".join(f"{left + x * plot:.1f},{top_pad + plot - y * plot:.1f}" for x, y in zip(xs, ys))
        color = PALETTE[k % len(PALETTE)]
        parts.append(f"<polyline class='mark' points='{points}' fill='none' stroke='{color}' stroke-width='2'>"
                     f"<title>{esc(name)}</title></polyline>")
        y = top_pad + plot + bottom + 10 + 14 * k
        parts.append(f"<rect x='{left}' y='{y - 9}' width='10' height='10' fill='{color}'/>"
                     f"<text class='legend' x='{left + 14}' y='{y}' font-size='11'>{esc(name)}</text>")
    parts.append(f"<text x='{left + plot / 2}' y='{top_pad + plot + 28}' font-size='10' text-anchor='middle'>"
                 f"{esc(x_label)}</text><text x='10' y='{top_pad + plot / 2}' font-size='10' text-anchor='middle' "
                 f"transform='rotate(-90 10 {top_pad + plot / 2})'>{esc(y_label)}</text></svg>")
    return "".join(parts)


def number(name: str, value: float) -> str:
    """A figure as a person writes it: counts whole (examples 39), measurements to 4 digits."""
    if float(value).is_integer() and (name in ("examples", "rows") or abs(value) >= 1000):
        return f"{int(value):,}"
    return f"{value:.4g}"
