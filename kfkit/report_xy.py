"""Two-number charts for the HTML reports: a scatter of points, or hexagonal bins once points are
many (thousands of dots draw one blot and a heavy page), in the same inline SVG as kfkit.report."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from kfkit.report import PALETTE, esc, nice, ticks_between

HEXBIN_ABOVE = 1000  # points past which density, not single dots, is what can be read


def _span(values: np.ndarray) -> tuple[float, float]:
    # the 0.5th-99.5th percentiles: a few outliers must not squeeze every other point into a corner
    low, high = (float(v) for v in np.percentile(values, [0.5, 99.5]))
    if high <= low:
        low, high = low - 0.5, high + 0.5
    pad = (high - low) * 0.03
    return low - pad, high + pad


def scatter(xs: Sequence[float], ys: Sequence[float], x_label: str, y_label: str, *, diagonal: bool = False,
            zero_line: bool = False, width: int = 460, height: int = 360, same_scale: bool = False) -> str:
    """Points (or hexagons shaded by how many points they hold) with labelled axes.

    `diagonal` draws y = x (predicted against actual), `zero_line` y = 0 (residuals), `same_scale`
    gives both axes one range so the diagonal is at 45 degrees.
    """
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if not len(x):
        return "<p class='muted'>no data</p>"
    (x0, x1), (y0, y1) = _span(x), _span(y)
    if same_scale:
        x0 = y0 = min(x0, y0)
        x1 = y1 = max(x1, y1)
    if zero_line:
        y0, y1 = min(y0, 0.0), max(y1, 0.0)
    left, right, top, bottom = 56, 12, 10, 40
    pw, ph = width - left - right, height - top - bottom

    def px(v):
        return left + (v - x0) / (x1 - x0) * pw

    def py(v):
        return top + ph - (v - y0) / (y1 - y0) * ph

    inside = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
    parts = [f"<svg width='{width}' height='{height + 16}' xmlns='http://www.w3.org/2000/svg' class='chart'>",
             f"<rect x='{left}' y='{top}' width='{pw}' height='{ph}' fill='none' stroke='#999'/>"]
    for t in ticks_between(x0, x1):
        parts.append(f"<line x1='{px(t):.1f}' x2='{px(t):.1f}' y1='{top}' y2='{top + ph + 4}' stroke='#eee'/>"
                     f"<text class='tick' x='{px(t):.1f}' y='{top + ph + 14}' font-size='9' "
                     f"text-anchor='middle'>{esc(nice(t))}</text>")
    for t in ticks_between(y0, y1):
        parts.append(f"<line x1='{left - 4}' x2='{left + pw}' y1='{py(t):.1f}' y2='{py(t):.1f}' stroke='#eee'/>"
                     f"<text class='tick' x='{left - 6}' y='{py(t) + 3:.1f}' font-size='9' "
                     f"text-anchor='end'>{esc(nice(t))}</text>")
    if diagonal:
        lo, hi = max(x0, y0), min(x1, y1)
        if hi > lo:
            parts.append(f"<line x1='{px(lo):.1f}' y1='{py(lo):.1f}' x2='{px(hi):.1f}' y2='{py(hi):.1f}' "
                         "stroke='#888' stroke-dasharray='4'><title>predicted = actual</title></line>")
    if zero_line:
        parts.append(f"<line x1='{left}' x2='{left + pw}' y1='{py(0):.1f}' y2='{py(0):.1f}' stroke='#888' "
                     "stroke-dasharray='4'/>")
    shown_x, shown_y = px(x[inside]), py(y[inside])
    if len(shown_x) > HEXBIN_ABOVE:
        clip = f"plot{id(parts)}"  # edge hexagons are cut at the frame, as the axes' range says
        parts.append(f"<clipPath id='{clip}'><rect x='{left}' y='{top}' width='{pw}' height='{ph}'/></clipPath>"
                     f"<g clip-path='url(#{clip})'>")
        legend = _hexagons(parts, shown_x, shown_y)
        parts.append("</g>")
    else:
        legend = f"{len(shown_x):,} points"
        parts += [f"<circle class='mark' cx='{a:.1f}' cy='{b:.1f}' r='2.5' fill='{PALETTE[0]}' fill-opacity='0.55'/>"
                  for a, b in zip(shown_x, shown_y)]
    outside = int((~inside).sum())
    notes = [legend] + ([f"{outside:,} outliers beyond the 0.5th-99.5th percentiles are off the axes"]
                        if outside else [])
    parts.append(f"<text class='label' x='{left + pw / 2}' y='{top + ph + 30}' font-size='10' text-anchor='middle'>"
                 f"{esc(x_label)}<title>{esc(x_label)}</title></text>"
                 f"<text class='label' x='12' y='{top + ph / 2}' font-size='10' text-anchor='middle' "
                 f"transform='rotate(-90 12 {top + ph / 2})'>{esc(y_label)}<title>{esc(y_label)}</title></text>")
    parts += [f"<text class='legend' x='8' y='{height + 10 + 12 * i}' font-size='9'>{esc(note)}</text>"
              for i, note in enumerate(notes)]
    parts[0] = parts[0].replace(f"height='{height + 16}'", f"height='{height + 4 + 12 * len(notes)}'")
    parts.append("</svg>")
    return "".join(parts)


def _hexagons(parts: list[str], x: np.ndarray, y: np.ndarray, radius: float = 7.0) -> str:
    """Pointy-top hexagons on two offset rectangular lattices (matplotlib's hexbin): each point goes
    to the nearer centre of the two; darker means more points."""
    dx, dy = math.sqrt(3) * radius, 3 * radius
    i1, j1 = np.round(x / dx), np.round(y / dy)
    i2, j2 = np.floor(x / dx), np.floor(y / dy)
    d1 = (x - i1 * dx) ** 2 + (y - j1 * dy) ** 2
    d2 = (x - (i2 + 0.5) * dx) ** 2 + (y - (j2 + 0.5) * dy) ** 2
    first = d1 <= d2
    cx = np.where(first, i1 * dx, (i2 + 0.5) * dx)
    cy = np.where(first, j1 * dy, (j2 + 0.5) * dy)
    centres, counts = np.unique(np.round(np.stack([cx, cy], axis=1), 3), axis=0, return_counts=True)
    most = counts.max()
    corners = [(radius * math.cos(math.radians(30 + 60 * k)), radius * math.sin(math.radians(30 + 60 * k)))
               for k in range(6)]
    for (a, b), n in zip(centres, counts):
        shade = 0.15 + 0.85 * math.log1p(n) / math.log1p(most)  # log: a few dense cells must not hide the rest
        points = " ".join(f"{a + u:.1f},{b + v:.1f}" for u, v in corners)
        parts.append(f"<polygon class='mark' points='{points}' fill='{PALETTE[0]}' fill-opacity='{shade:.2f}'>"
                     f"<title>{n} points</title></polygon>")
    return f"{len(x):,} points in hexagons, darker = more (max {most:,})"
