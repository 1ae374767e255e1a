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
.card h3{font-size:14px;margin:0 0 6px 0}.muted{color:#666;font-size:12px}
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


def bar_chart(labels: Sequence[str], series: Sequence[Sequence[float]], names: Sequence[str] = (),
              width: int = 360, height: int = 160, rotate_labels: bool = False) -> str:
    """Grouped bars (one group per label, one bar per series), values as fractions or counts."""
    if not labels:
        return "<p class='muted'>no data</p>"
    top = max((max(s) if len(s) else 0) for s in series) or 1.0
    pad_bottom = 44 if rotate_labels else 18
    plot_h = height - pad_bottom - 4
    group_w = (width - 10) / len(labels)
    bar_w = max(group_w / (len(series) + 0.5), 1.0)
    parts = [f"<svg width='{width}' height='{height}' xmlns='http://www.w3.org/2000/svg'>"]
    for i, label in enumerate(labels):
        for j, values in enumerate(series):
            value = values[i] if i < len(values) else 0
            h = plot_h * value / top
            x = 5 + i * group_w + j * bar_w
            opacity = "0.85" if len(series) == 1 else "0.6"
            parts.append(f"<rect x='{x:.1f}' y='{4 + plot_h - h:.1f}' width='{bar_w:.1f}' height='{h:.1f}' "
                         f"fill='{PALETTE[j % len(PALETTE)]}' fill-opacity='{opacity}'>"
                         f"<title>{esc(label)}: {fmt(value)}{' (' + esc(names[j]) + ')' if names else ''}</title></rect>")
        # at most about a dozen axis labels, so they stay legible; every bar keeps its tooltip
        step = max(1, -(-len(labels) // 12))
        if (rotate_labels or len(labels) <= 12) and (i % step == 0 or i == len(labels) - 1):
            x = 5 + i * group_w + group_w / 2
            text = esc(str(label)[:18]) + f"<title>{esc(label)}</title>"
            if rotate_labels:
                parts.append(f"<text x='{x:.1f}' y='{height - pad_bottom + 12}' font-size='9' "
                             f"transform='rotate(35 {x:.1f} {height - pad_bottom + 12})'>{text}</text>")
            else:
                parts.append(f"<text x='{x:.1f}' y='{height - 4}' font-size='9' text-anchor='middle'>{text}</text>")
    for j, name in enumerate(names):
        parts.append(f"<rect x='{width - 110}' y='{6 + 14 * j}' width='10' height='10' fill='{PALETTE[j % len(PALETTE)]}'/>"
                     f"<text x='{width - 96}' y='{15 + 14 * j}' font-size='11'>{esc(name)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def histogram(edges: Sequence[float], series: Sequence[Sequence[float]], names: Sequence[str] = (),
              width: int = 360, height: int = 160) -> str:
    """Histogram(s) over shared bin edges; the axis shows the first and last edge."""
    labels = [f"[{edges[i]:.4g}, {edges[i + 1]:.4g})" for i in range(len(edges) - 1)]
    svg = bar_chart(labels, series, names, width, height - 14)
    if not edges:
        return svg
    axis = (f"<div class='muted' style='display:flex;justify-content:space-between;width:{width}px'>"
            f"<span>{edges[0]:.4g}</span><span>{edges[-1]:.4g}</span></div>")
    return svg + axis
