"""Every split's distribution on the training split's bins and categories, so the report can
overlay train, eval and test per feature as Facets Overview does (a skewed split shows at a glance).

Only for splits read from Parquet: a split BigQuery describes is shown through its anomalies alone
(one more query per column for a chart is not worth its bytes billed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from kfkit.components.validate.kinds import is_integer_type

CODED_MAX = 31  # integers with at most this many values (hours, weekdays, days of month) are codes


def is_coded(entry: dict[str, Any]) -> bool:
    """An integer column whose few values are categories (an hour, a weekday), not a quantity."""
    return (entry.get("kind") == "numeric" and is_integer_type(entry.get("type", ""))
            and bool(entry.get("frequencies")) and entry.get("domain_complete", False)
            and entry.get("distinct", CODED_MAX + 1) <= CODED_MAX)


def shown_histogram(entry: dict[str, Any]) -> dict[str, Any] | None:
    return entry.get("display_histogram") or entry.get("histogram")


def categories(entry: dict[str, Any], limit: int = 20) -> list[str]:
    """The values a chart shows: codes in their own order, other categories most frequent first."""
    values = list(entry.get("frequencies", {}))
    return sorted(values, key=float) if is_coded(entry) else values[:limit]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def split_distribution(dataset: str | Path, train_stats: dict[str, Any]) -> dict[str, list[float]]:
    """Counts of one split per column, on the training split's histogram bins or categories."""
    path = Path(dataset)
    source = str(path / "*.parquet") if path.is_dir() else str(path)
    rel = f"read_parquet('{source}')"
    con = duckdb.connect()
    try:
        present = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {rel}").fetchall()}
        out = {}
        for name, entry in train_stats["columns"].items():
            if name not in present:
                continue
            try:
                counts = _counts(con, rel, _q(name), entry)
            except duckdb.Error:
                continue  # a column whose type changed: its anomaly says so, the chart leaves it out
            if counts is not None:
                out[name] = counts
        return out
    finally:
        con.close()


def _counts(con, rel: str, col: str, entry: dict[str, Any]) -> list[float] | None:
    if entry["kind"] == "categorical" or is_coded(entry):
        shown = categories(entry)
        counts = dict(con.execute(f"SELECT {col}::VARCHAR, count(*) FROM {rel} WHERE {col} IS NOT NULL "
                                  "GROUP BY 1").fetchall())
        return [float(counts.get(value, 0)) for value in shown]
    hist = shown_histogram(entry)
    return _binned(con, rel, col, hist["edges"]) if hist is not None else None


def _binned(con, rel: str, col: str, edges: list[float]) -> list[float]:
    bins, low, high = len(edges) - 1, edges[0], edges[-1]
    if high <= low:
        n = con.execute(f"SELECT count(*) FROM {rel} WHERE {col}::DOUBLE = {low!r}").fetchone()[0]
        return [float(n)]
    counts = [0.0] * bins
    # values outside the training range are not drawn (the training chart's range is the reference)
    for bucket, n in con.execute(
            f"SELECT least(floor(({col}::DOUBLE - {low!r}) / ({high!r} - {low!r}) * {bins}), {bins - 1})::INT, "
            f"count(*) FROM {rel} WHERE {col}::DOUBLE BETWEEN {low!r} AND {high!r} GROUP BY 1").fetchall():
        counts[bucket] += n
    return counts
