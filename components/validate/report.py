"""The validation report: anomalies, the statistics, and each feature's distribution with train,
eval and test overlaid on the training split's bins (as Facets Overview shows them)."""

from __future__ import annotations

from typing import Any

from kfkit import report
from kfkit.components.validate.overlay import categories, is_coded, shown_histogram

SPLIT_COLORS = {"train": report.PALETTE[0], "eval": report.PALETTE[1], "test": report.PALETTE[2]}


def _percent(counts: list[float]) -> list[float]:
    total = sum(counts)
    return [100 * c / total if total else 0.0 for c in counts]


def _series(name: str, train: list[float], others: dict[str, dict[str, list[float]]]):
    """(series, names, colours, as shares?): counts for the training split alone, else % of each split."""
    compared = {split: counts[name] for split, counts in others.items() if name in counts}
    if not compared:
        return [train], (), (), False
    splits = {"train": train, **compared}
    colors = [SPLIT_COLORS.get(s, report.PALETTE[3]) for s in splits]
    return [_percent(c) for c in splits.values()], list(splits), colors, True


def _card(name: str, entry: dict[str, Any], others: dict[str, dict[str, list[float]]]) -> str:
    coded = is_coded(entry)
    if entry["kind"] == "categorical" or coded:
        shown = categories(entry)
        if not shown:
            return ""
        train = [float(entry["frequencies"][value]) for value in shown]
        series, names, colors, shares = _series(name, train, others)
        chart = report.bar_chart(shown, series, names, width=420, height=200, rotate_labels=not coded,
                                 colors=colors, integer=not shares)
        kind = f" (integer codes: {len(shown)} values)" if coded else ""
    else:
        hist = shown_histogram(entry)
        if not hist:
            return ""
        series, names, colors, shares = _series(name, [float(c) for c in hist["counts"]], others)
        chart = report.histogram(hist["edges"], series, names, width=420, height=280, colors=colors,
                                 integer=not shares)
        kind = ""
        if "below" in hist:
            chart += (f"<div class='muted'>shown: the 1st to 99th percentile; {hist['below']} lower and "
                      f"{hist['above']} higher values (outliers, up to {report.nice(entry['min'])} and "
                      f"{report.nice(entry['max'])}) are not drawn</div>")
    unit = "% of each split's values" if shares else "rows of the training split"
    return (f"<div class='card'><h3>{report.esc(name)}{kind}</h3>{chart}"
            f"<div class='muted'>{unit}</div></div>")


def render(result, title: str = "kfkit data validation") -> str:
    stats = result.statistics
    blocking = result.blocking
    body = [f"<p class='bad'>{len(blocking)} blocking anomal{'y' if len(blocking) == 1 else 'ies'}</p>"
            if blocking else "<p class='ok'>No blocking anomalies.</p>",
            "<h2>Splits</h2>" + report.table(["split", "rows"], sorted(result.split_rows.items()))]
    if result.anomalies:
        body.append("<h2>Anomalies</h2>" + report.table(
            ["column", "split", "kind", "blocking", "message"],
            [(a.column, a.split, a.kind, report.Markup("<span class='bad'>yes</span>") if a.blocking else "no",
              a.message) for a in result.anomalies]))
    numeric = [(n, e) for n, e in stats["columns"].items() if e["kind"] == "numeric"]
    categorical = [(n, e) for n, e in stats["columns"].items() if e["kind"] == "categorical"]
    if numeric:
        body.append("<h2>Numeric features (training split)</h2>" + report.table(
            ["column", "count", "nulls", "min", "mean", "std", "p50", "max"],
            [(n, e["count"], e["nulls"], e.get("min"), e.get("mean"), e.get("std"),
              (e.get("quantiles") or {}).get("0.5"), e.get("max")) for n, e in numeric]))
    if categorical:
        body.append("<h2>Categorical features (training split)</h2>" + report.table(
            ["column", "count", "nulls", "distinct", "most frequent"],
            [(n, e["count"], e["nulls"], e.get("distinct"),
              ", ".join(f"{k} ({v})" for k, v in list(e.get("frequencies", {}).items())[:3])) for n, e in categorical]))
    others = getattr(result, "split_counts", {}) or {}
    heading = ("Distributions: " + ", ".join(["train", *others]) + " overlaid" if others
               else "Distributions (training split)")
    cards = [_card(name, entry, others) for name, entry in numeric + categorical]
    body.append(f"<h2>{heading}</h2><div class='grid'>" + "".join(cards) + "</div>")
    return report.page(title, body)
