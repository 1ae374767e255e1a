"""Validation statistics computed by BigQuery: the same numbers as validate.py's DuckDB path, no row read here.

When BigQuery exported a split (ingest above export_threshold_bytes), validate asks BigQuery for
everything it needs with a handful of queries over the split's SELECT (the staging table filtered
to the split's buckets), instead of reading the shards through one container:

1. one aggregate query: rows, non-null counts, min/max/mean/population std per number, the
   finite range and NaN/+-inf counts TFDV's histogram needs, distinct counts;
2. one query of exact quantiles, PERCENTILE_CONT (linear interpolation, as DuckDB's quantile_cont);
3. one query of histogram counts, COUNTIF per bucket: the 20-bin chart histogram with DuckDB's
   floor((x - min) / width) bucketing, and TFDV's 10-bucket standard histogram on the edges
   np.linspace gives (the bucket [e_i, e_i+1), the last one closed, as np.histogram assigns them);
4. one query of the top 1,000 values per categorical or integer column.

The SQL is BigQuery's; tests/test_validate_bigquery.py runs it on the local warehouse over the same
rows and compares every number with the DuckDB path's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from kfkit.components.validate.kinds import (HISTOGRAM_BINS, MAX_DOMAIN, QUANTILES, SCHEMA_VERSION, column_kind,
                                             edges_between, is_integer_type)
from kfkit import tfdv

# the type Arrow reports for a Parquet column -> the type name DuckDB reports for it (what the
# statistics and the schema record on the local path)
ARROW_TO_DUCKDB = {"double": "DOUBLE", "float": "FLOAT", "int64": "BIGINT", "int32": "INTEGER", "string": "VARCHAR",
                   "large_string": "VARCHAR", "bool": "BOOLEAN", "date32[day]": "DATE", "binary": "BLOB",
                   "timestamp[us, tz=UTC]": "TIMESTAMP WITH TIME ZONE", "timestamp[us]": "TIMESTAMP",
                   "time64[us]": "TIME", "decimal128(38, 9)": "DECIMAL(38,9)"}


def duckdb_type(arrow_type: str) -> str:
    return ARROW_TO_DUCKDB.get(arrow_type, arrow_type.upper())


def quote(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def literal(value: float) -> str:
    return f"CAST({value!r} AS FLOAT64)" if math.isfinite(value) else f"CAST('{value}' AS FLOAT64)"


@dataclass
class SqlSource:
    """A split as rows of a BigQuery SELECT; `query` runs SQL and returns its rows as dicts."""

    select: str
    columns: list[tuple[str, str]]  # (name, DuckDB type name)
    query: Callable[..., list[dict[str, Any]]]

    @property
    def rel(self) -> str:
        return f"({self.select})"

    def probe(self) -> "SqlProbe":
        """What validate.check_split asks of a split, answered by BigQuery."""
        return SqlProbe(self)


class SqlProbe:
    """check_split's questions about a split, answered by BigQuery."""

    def __init__(self, source: SqlSource):
        self.source = source
        self._counts: dict[str, int] | None = None

    def columns(self) -> dict[str, str]:
        return dict(self.source.columns)

    def _aggregate(self) -> dict[str, int]:
        if self._counts is None:
            parts = ["COUNT(*) AS `__rows`"] + [f"COUNT({quote(name)}) AS `n{i}`"
                                                for i, (name, _) in enumerate(self.source.columns)]
            self._counts = self.source.query(f"SELECT {', '.join(parts)} FROM {self.source.rel}")[0]
        return self._counts

    def rows(self) -> int:
        return int(self._aggregate()["__rows"])

    def non_null(self, column: str) -> int:
        index = [name for name, _ in self.source.columns].index(column)
        return int(self._aggregate()[f"n{index}"])

    def unseen(self, column: str, domain: list[str]) -> list[tuple[str, int]]:
        value = f"CAST({quote(column)} AS STRING)"
        outside = f"{value} NOT IN UNNEST(@domain)" if domain else "TRUE"
        rows = self.source.query(
            f"SELECT {value} AS v, COUNT(*) AS n FROM {self.source.rel} WHERE {quote(column)} IS NOT NULL AND "
            f"{outside} GROUP BY 1 ORDER BY 2 DESC, 1", {"domain": list(domain)} if domain else None)
        return [(r["v"], int(r["n"])) for r in rows]

    def close(self) -> None:
        pass


def _float(column: str) -> str:
    return f"CAST({quote(column)} AS FLOAT64)"


def compute_statistics(source: SqlSource, label_column: str = "") -> dict[str, Any]:
    """validate.compute_statistics's dictionary, every number computed by SQL on `source`."""
    columns = [(name, kind_type, column_kind(kind_type), i) for i, (name, kind_type) in enumerate(source.columns)]
    numeric = [c for c in columns if c[2] == "numeric"]
    counted = [c for c in columns if c[2] == "categorical" or is_integer_type(c[1])]

    parts = ["COUNT(*) AS `__rows`"]
    for name, _, kind, i in columns:
        parts.append(f"COUNT({quote(name)}) AS `n{i}`")
    for name, _, _, i in numeric:
        x = _float(name)
        finite = f"IF(IS_INF({x}) OR IS_NAN({x}), NULL, {x})"
        # DuckDB orders NaN above every number: its MIN skips NaN and its MAX is NaN if any is
        parts += [f"MIN(IF(IS_NAN({x}), NULL, {x})) AS `min{i}`",
                  f"IF(COUNTIF(IS_NAN({x})) > 0, CAST('nan' AS FLOAT64), MAX({x})) AS `max{i}`",
                  f"AVG({quote(name)}) AS `mean{i}`",
                  f"STDDEV_POP({quote(name)}) AS `std{i}`", f"MIN({finite}) AS `flo{i}`", f"MAX({finite}) AS `fhi{i}`",
                  f"COUNTIF(IS_NAN({x})) AS `nan{i}`", f"COUNTIF({x} = CAST('inf' AS FLOAT64)) AS `pinf{i}`",
                  f"COUNTIF({x} = CAST('-inf' AS FLOAT64)) AS `ninf{i}`"]
    for name, _, _, i in counted:
        parts.append(f"COUNT(DISTINCT {quote(name)}) AS `distinct{i}`")
    agg = source.query(f"SELECT\n  {(',' + chr(10) + '  ').join(parts)}\nFROM {source.rel}")[0]

    present = [c for c in numeric if agg[f"n{c[3]}"]]
    quantiles: dict[str, Any] = {}
    if present:
        qparts = [f"PERCENTILE_CONT({_float(name)}, {q}) OVER () AS `q{i}_{k}`"
                  for name, _, _, i in present for k, q in enumerate(QUANTILES)]
        quantiles = source.query(f"SELECT * FROM (SELECT {', '.join(qparts)} FROM {source.rel}) LIMIT 1")[0]

    stats: dict[str, Any] = {"version": SCHEMA_VERSION, "rows": int(agg["__rows"]), "label": label_column,
                             "columns": {}}
    histogram_parts: list[str] = []
    buckets: list[str] = []  # the inner select's per-row bucket columns
    pending: list[Callable[[dict[str, Any]], None]] = []
    for name, duck_type, kind, i in columns:
        entry: dict[str, Any] = {"kind": kind, "type": duck_type}
        count = int(agg[f"n{i}"])
        entry.update(count=count, nulls=int(agg["__rows"]) - count)
        stats["columns"][name] = entry
        if kind == "numeric" and count:
            entry.update(min=_f(agg[f"min{i}"]), max=_f(agg[f"max{i}"]), mean=_f(agg[f"mean{i}"]),
                         std=_f(agg[f"std{i}"]),
                         quantiles={str(q): _f(quantiles[f"q{i}_{k}"]) for k, q in enumerate(QUANTILES)})
            # the chart spans the finite values, as on the DuckDB path
            fmn, fmx = _f(agg[f"flo{i}"]), _f(agg[f"fhi{i}"])
            finite = f"NOT IS_INF({_float(name)}) AND NOT IS_NAN({_float(name)})"
            if fmn is not None:
                histogram_parts += _chart_counts(name, f"h{i}", fmn, fmx, finite, buckets)
                pending.append(_chart_reader(entry, "histogram", f"h{i}", fmn, fmx))
            low, high = entry["quantiles"].get("0.01"), entry["quantiles"].get("0.99")
            if fmn is not None and low is not None and high is not None and high > low \
                    and (fmx - fmn) > 4 * (high - low):
                inside = f"{quote(name)} BETWEEN {literal(low)} AND {literal(high)}"
                histogram_parts += _chart_counts(name, f"d{i}", low, high, inside, buckets)
                histogram_parts += [f"COUNTIF({quote(name)} < {literal(low)}) AS `below{i}`",
                                    f"COUNTIF({quote(name)} > {literal(high)}) AS `above{i}`"]
                pending.append(_display_reader(entry, i, low, high, inside))
            histogram_parts += _tfdv_counts(name, i, agg)
            pending.append(_tfdv_reader(entry, i, agg))
        if kind == "categorical" or (is_integer_type(duck_type) and count):
            entry.update(distinct=int(agg[f"distinct{i}"]), domain_complete=int(agg[f"distinct{i}"]) <= MAX_DOMAIN)
    inner = "".join(f",\n    {b}" for b in buckets)
    counts = source.query(f"SELECT\n  {(',' + chr(10) + '  ').join(histogram_parts)}\n"
                          f"FROM (SELECT *{inner}\n  FROM {source.rel})")[0] if histogram_parts else {}
    for read in pending:
        read(counts)
    _frequencies(source, stats, [c for c in counted if c[2] == "categorical" or agg[f"n{c[3]}"]])
    return _ordered(stats, columns)


def _f(value) -> float | None:
    return None if value is None else float(value)


def _chart_counts(name: str, prefix: str, mn: float, mx: float, where: str, buckets: list[str]) -> list[str]:
    """COUNTIFs of validate._histogram's 20 buckets, least(floor((x/2 - min/2) / (max/2 - min/2) * 20), 19),
    over `where` (halves: a range wider than the largest double never overflows)."""
    if mx == mn:
        return [f"COUNTIF({where} AND {quote(name)} IS NOT NULL) AS `{prefix}_0`"]
    half_range = mx / 2 - mn / 2
    bucket = (f"LEAST(FLOOR(({_float(name)} / 2 - {literal(mn / 2)}) / {literal(half_range)} * {HISTOGRAM_BINS}), "
              f"{HISTOGRAM_BINS - 1})")
    # each row's bucket computed once, in the query's inner select (buckets), and counted 20 times: the
    # bucket written into each COUNTIF made the query 20 times its size (and its local translation,
    # which guards every comparison against NaN, too large for DuckDB to bind in reasonable time)
    column = f"__kfkit_bucket_{prefix}"
    buckets.append(f"IF({where} AND {quote(name)} IS NOT NULL, {bucket}, NULL) AS `{column}`")
    return [f"COUNTIF(`{column}` = {k}) AS `{prefix}_{k}`" for k in range(HISTOGRAM_BINS)]


def _chart(counts: dict[str, Any], prefix: str, mn: float, mx: float) -> dict[str, list]:
    if mx == mn:
        return {"edges": [mn, mx], "counts": [int(counts[f"{prefix}_0"])]}
    return {"edges": edges_between(mn, mx, HISTOGRAM_BINS),
            "counts": [int(counts[f"{prefix}_{k}"]) for k in range(HISTOGRAM_BINS)]}


def _chart_reader(entry, key, prefix, mn, mx):
    def read(counts):
        entry[key] = _chart(counts, prefix, mn, mx)
    return read


def _display_reader(entry, i, low, high, inside):
    def read(counts):
        entry["display_histogram"] = {**_chart(counts, f"d{i}", low, high),
                                      "below": int(counts[f"below{i}"]), "above": int(counts[f"above{i}"])}
    return read


def _tfdv_edges(agg: dict[str, Any], i: int) -> np.ndarray | None:
    lo, hi = agg[f"flo{i}"], agg[f"fhi{i}"]
    if lo is None or float(lo) == float(hi):
        return None
    return np.linspace(float(lo), float(hi), tfdv.NUM_BUCKETS + 1)


def _tfdv_counts(name: str, i: int, agg: dict[str, Any]) -> list[str]:
    """COUNTIFs of TFDV's standard histogram buckets over the finite values (tfdv.histogram)."""
    edges = _tfdv_edges(agg, i)
    if edges is None or not np.isfinite(edges).all():
        return []
    x = _float(name)
    out = []
    for k in range(tfdv.NUM_BUCKETS):
        upper = "<=" if k == tfdv.NUM_BUCKETS - 1 else "<"
        out.append(f"COUNTIF({x} >= {literal(float(edges[k]))} AND {x} {upper} {literal(float(edges[k + 1]))}) "
                   f"AS `t{i}_{k}`")
    return out


def _tfdv_reader(entry, i, agg):
    def read(counts):
        nan, neg_inf, pos_inf = int(agg[f"nan{i}"]), int(agg[f"ninf{i}"]), int(agg[f"pinf{i}"])
        lo, hi = agg[f"flo{i}"], agg[f"fhi{i}"]
        result = tfdv.Histogram(num_nan=float(nan))
        if lo is None:
            if neg_inf or pos_inf:
                result.buckets.append((-math.inf if neg_inf else math.inf, math.inf if pos_inf else -math.inf,
                                       float(neg_inf + pos_inf)))
            entry["tfdv_histogram"] = result.to_json()
            return
        lo, hi = float(lo), float(hi)
        finite = entry["count"] - nan - neg_inf - pos_inf
        edges = _tfdv_edges(agg, i)
        if edges is not None and not np.isfinite(edges).all():
            entry["tfdv_histogram"] = tfdv.Histogram(num_nan=float(nan)).to_json()
            return
        if neg_inf:
            result.buckets.append((-math.inf, -math.inf, float(neg_inf)))
        if edges is None:
            result.buckets.append((lo, hi, float(finite)))
        else:
            result.buckets.extend((float(edges[k]), float(edges[k + 1]), float(counts[f"t{i}_{k}"]))
                                  for k in range(tfdv.NUM_BUCKETS))
        if pos_inf:
            result.buckets.append((math.inf, math.inf, float(pos_inf)))
        entry["tfdv_histogram"] = result.to_json()
    return read


def _frequencies(source: SqlSource, stats: dict[str, Any], counted: list) -> None:
    if not counted:
        return
    selects = [f"SELECT {i} AS c, v, n FROM (SELECT CAST({quote(name)} AS STRING) AS v, COUNT(*) AS n FROM {source.rel} "
               f"WHERE {quote(name)} IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {MAX_DOMAIN})"
               for name, _, _, i in counted]
    rows = source.query("\nUNION ALL\n".join(selects))
    by_column: dict[int, list[tuple[str, int]]] = {}
    for row in rows:
        by_column.setdefault(int(row["c"]), []).append((row["v"], int(row["n"])))
    for name, _, _, i in counted:
        top = sorted(by_column.get(i, []), key=lambda vn: (-vn[1], vn[0]))  # UNION ALL keeps no order
        stats["columns"][name]["frequencies"] = dict(top)


def _ordered(stats: dict[str, Any], columns) -> dict[str, Any]:
    """The entries' keys in the order the DuckDB path writes them (the JSON reads the same)."""
    order = ["kind", "type", "count", "nulls", "min", "max", "mean", "std", "quantiles", "histogram",
             "display_histogram", "tfdv_histogram", "distinct", "frequencies", "domain_complete"]
    for name, *_ in columns:
        entry = stats["columns"][name]
        stats["columns"][name] = {k: entry[k] for k in order if k in entry}
    return stats
