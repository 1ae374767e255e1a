"""The canary analysis as an HTML page: verdict and why, each criterion, and the two sides over time."""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime, timezone

from kfkit import report as r
from kfkit.components.canary.analysis import PROMOTE, ROLLBACK, Served
from kfkit.components.canary.canary import CanaryResult


def _predictions_chart(canary: list, baseline: list) -> str:
    numbers = [v for v in baseline + canary if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    if numbers and len(numbers) > (len(baseline) + len(canary)) / 2:
        import numpy as np

        edges = list(np.histogram_bin_edges(numbers, bins=12))

        def shares(values):
            counts, _ = np.histogram([v for v in values if isinstance(v, (int, float))], bins=edges)
            total = counts.sum() or 1
            return [c / total for c in counts]
        return r.histogram(edges, [shares(baseline), shares(canary)], ["baseline", "canary"], width=520)
    base, can = Counter(map(str, baseline)), Counter(map(str, canary))
    labels = [k for k, _ in (base + can).most_common(20)]
    tb, tc = sum(base.values()) or 1, sum(can.values()) or 1
    return r.bar_chart(labels, [[base[k] / tb for k in labels], [can[k] / tc for k in labels]], ["baseline", "canary"],
                       width=520)


def render(result: CanaryResult) -> str:
    a = result.analysis
    css = {PROMOTE: "ok", ROLLBACK: "bad"}.get(a.verdict, "warn")
    start, end = (datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") for t in result.window)
    body = [f"<h1>Canary analysis: endpoint {r.esc(result.endpoint)}</h1>",
            f"<p class='{css}'>Verdict: {r.esc(a.verdict.upper())}: {r.esc(a.reason)}</p>",
            f"<p>Action: {r.esc(result.action)}. Window {start} to {end}. Canary {r.esc(result.canary['id'])} "
            f"(version {r.esc(result.canary['version'])}); baseline "
            f"{r.esc(', '.join(m['id'] + ' (version ' + m['version'] + ')' for m in result.baseline))}.</p>",
            "<h2>Criteria</h2>",
            r.table(["criterion", "canary", "baseline", "limit", "status", "p-value", "evidence"],
                    [[c.name, c.canary, c.baseline, c.limit, {"pass": "pass", "fail": "FAIL"}.get(c.status, c.status),
                      c.p_value, c.detail] for c in a.criteria]
                    or [["(none: too little traffic)", None, None, None, "", None, a.reason]]),
            "<h2>Figures</h2>",
            r.table(["", "requests", "errors", "error rate", "p50 ms", "p99 ms", "with ground truth"],
                    [[side] + [f[k] for k in ("requests", "errors", "error_rate", "latency_p50_ms", "latency_p99_ms",
                                              "labelled")]
                     for side, f in (("canary", a.canary), ("baseline", a.baseline))])]
    ids = [result.canary["id"]] + [m["id"] for m in result.baseline]
    buckets = len(next(iter(result.timeline.values()), []))
    if buckets:
        labels = [str(i + 1) for i in range(buckets)]
        names = [f"{'canary' if i == result.canary['id'] else 'baseline'} {i}" for i in ids]
        for title, index in (("Requests", 0), ("Errors", 1), ("Latency p99 (ms)", 2)):
            series = [[slot[index] for slot in result.timeline.get(i, [[0, 0, 0]] * buckets)] for i in ids]
            body.append(f"<div class='card'><h3>{title} over the window ({buckets} equal slices)</h3>"
                        f"{r.bar_chart(labels, series, names, width=520)}</div>")
    body.append("<h2>Predictions</h2>")
    canary, baseline = result.served or (Served("canary"), Served("baseline"))
    body.append(_predictions_chart(canary.predictions, baseline.predictions))
    return r.page(f"Canary {result.endpoint}", body)
