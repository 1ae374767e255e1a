"""The canary analysis as an HTML page: verdict and why, each criterion, and the two sides over time."""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime, timezone

from kfkit import report as r
from kfkit.components.canary.analysis import PROMOTE, ROLLBACK, Served
from kfkit.components.canary.canary import CanaryResult

# one colour per side in every chart and legend: a reader learns it once
BASELINE, CANARY = r.PALETTE[0], r.PALETTE[1]
SIDE_COLORS = [BASELINE, CANARY]
# a distance compares the two sides: it has no value of the baseline's own
NO_BASELINE = {"prediction_distance"}


def _predictions_chart(canary: list, baseline: list) -> str:
    numbers = [v for v in baseline + canary if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    if numbers and len(numbers) > (len(baseline) + len(canary)) / 2:
        import numpy as np

        edges = list(np.histogram_bin_edges(numbers, bins=12))

        def shares(values):
            counts, _ = np.histogram([v for v in values if isinstance(v, (int, float))], bins=edges)
            total = counts.sum() or 1
            return [c / total for c in counts]
        return r.histogram(edges, [shares(baseline), shares(canary)], ["baseline", "canary"], width=520,
                           colors=SIDE_COLORS)
    base, can = Counter(map(str, baseline)), Counter(map(str, canary))
    labels = [k for k, _ in (base + can).most_common(20)]
    tb, tc = sum(base.values()) or 1, sum(can.values()) or 1
    if not labels:
        return "<p class='muted'>no predictions in the window</p>"
    return r.bar_chart(labels, [[base[k] / tb for k in labels], [can[k] / tc for k in labels]], ["baseline", "canary"],
                       width=520, colors=SIDE_COLORS)


def _criteria_table(criteria: list) -> str:
    def status(c) -> r.Markup:
        css = {"pass": "ok", "fail": "bad"}.get(c.status, "warn")
        return r.Markup(f"<span class='{css}'>{r.esc({'fail': 'FAIL'}.get(c.status, c.status))}</span>")

    def interval(c) -> str:
        return f"{r.nice(c.interval[0])} to {r.nice(c.interval[1])}" if c.interval else "—"

    rows = [[c.name, status(c), c.p_value if c.p_value is not None else "—",
             c.canary if c.canary is not None else "—",
             "—" if c.name in NO_BASELINE or c.baseline is None else c.baseline,
             c.limit if c.limit is not None and not (isinstance(c.limit, float) and math.isnan(c.limit)) else "—",
             interval(c), c.detail] for c in criteria]
    return r.table(["criterion", "status", "p-value", "canary", "baseline", "limit", "interval", "evidence"], rows)


def _timeline(result: CanaryResult) -> list[str]:
    """Requests, errors and p99 latency per slice of the window, baseline before canary as in every chart."""
    ids = [m["id"] for m in result.baseline] + [result.canary["id"]]
    buckets = len(next(iter(result.timeline.values()), []))
    if not buckets:
        return ["<p class='muted'>no requests in the window</p>"]
    labels = [str(i + 1) for i in range(buckets)]
    names = [f"{'canary' if i == result.canary['id'] else 'baseline'} {i}" for i in ids]
    colors = [CANARY if i == result.canary["id"] else BASELINE for i in ids]
    cards = []
    for title, index, empty in (("Requests", 0, "no requests in the window"),
                                ("Errors", 1, "no errors in the window"),
                                ("Latency p99 (ms)", 2, "no latencies in the window")):
        series = [[slot[index] for slot in result.timeline.get(i, [[0, 0, 0]] * buckets)] for i in ids]
        heading = f"<h3>{title} over the window ({buckets} equal slices)</h3>"
        if not any(v for s in series for v in s):
            cards.append(f"<div class='card'>{heading}<p class='muted'>{empty}</p></div>")
            continue
        chart = r.bar_chart(labels, series, names, width=520, colors=colors, integer=index < 2)
        cards.append(f"<div class='card'>{heading}{chart}</div>")
    return cards


def render(result: CanaryResult) -> str:
    a = result.analysis
    css = {PROMOTE: "ok", ROLLBACK: "bad"}.get(a.verdict, "warn")
    start, end = (datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") for t in result.window)
    body = [f"<p class='{css}'>Verdict: {r.esc(a.verdict.upper())}: {r.esc(a.reason)}</p>",
            f"<p>Action: {r.esc(result.action)}. Window {start} to {end}. "
            f"<span style='color:{CANARY}'>&#9632;</span> Canary {r.esc(result.canary['id'])} "
            f"(version {r.esc(result.canary['version'])}); <span style='color:{BASELINE}'>&#9632;</span> baseline "
            f"{r.esc(', '.join(m['id'] + ' (version ' + m['version'] + ')' for m in result.baseline))}.</p>",
            "<h2>Criteria</h2>",
            _criteria_table(a.criteria) if a.criteria else f"<p class='warn'>No criterion judged: {r.esc(a.reason)}</p>",
            "<h2>Figures</h2>",
            r.table(["", "requests", "errors", "error rate", "p50 ms", "p99 ms", "with ground truth"],
                    [[side] + [f[k] for k in ("requests", "errors", "error_rate", "latency_p50_ms", "latency_p99_ms",
                                              "labelled")]
                     for side, f in (("baseline", a.baseline), ("canary", a.canary))]),
            "<div class='grid'>", *_timeline(result), "</div>"]
    body.append("<h2>Predictions</h2>")
    canary, baseline = result.served or (Served("canary"), Served("baseline"))
    body.append(_predictions_chart(canary.predictions, baseline.predictions))
    return r.page(f"Canary analysis: endpoint {result.endpoint}", body)
