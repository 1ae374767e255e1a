"""Data validation: statistics of the training split, a schema, and anomalies in every split.

Statistics are computed by DuckDB straight from the Parquet shards (streamed, never a whole table
in memory); the JSON they produce is the training baseline the monitor compares serving data with.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from kfkit import tfdv
from kfkit.config import local_path
from kfkit.errors import ConfigError, ValidationError
from kfkit.components.validate.kinds import (HISTOGRAM_BINS, MAX_DOMAIN, QUANTILES, SCHEMA_VERSION, column_kind,
                                             edges_between, is_integer_type)

log = logging.getLogger("kfkit.validate")



@dataclass
class Anomaly:
    column: str
    kind: str
    message: str
    blocking: bool = True
    split: str = ""

    def __str__(self) -> str:
        where = f" in split {self.split!r}" if self.split else ""
        return f"column {self.column!r}{where}: {self.message}"


def parquet_glob(path: str | Path) -> str:
    path = Path(path)
    if path.is_dir():
        return str(path / "*.parquet")
    if path.exists():
        return str(path)
    raise ConfigError(f"dataset {str(path)!r} does not exist (expected a Parquet file or a directory of shards)")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def describe_columns(con, source: str) -> list[tuple[str, str]]:
    return [(row[0], row[1]) for row in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{source}')").fetchall()]


def compute_statistics(dataset: str | Path, label_column: str = "") -> dict[str, Any]:
    """Count, nulls, min/max/mean/std/quantiles and a histogram per number; frequencies per category.

    `dataset` is a directory of Parquet shards (read by DuckDB), or a bigquery_stats.SqlSource
    whose statistics BigQuery computes with the same definitions.
    """
    if not isinstance(dataset, (str, Path)):
        from kfkit.components.validate.bigquery_stats import compute_statistics as on_bigquery
        return on_bigquery(dataset, label_column)
    source = parquet_glob(dataset)
    con = duckdb.connect()
    columns = describe_columns(con, source)
    rel = f"read_parquet('{source}')"
    rows = con.execute(f"SELECT count(*) FROM {rel}").fetchone()[0]
    stats: dict[str, Any] = {"version": SCHEMA_VERSION, "rows": rows, "label": label_column, "columns": {}}
    for name, duck_type in columns:
        kind = column_kind(duck_type)
        col = _q(name)
        entry: dict[str, Any] = {"kind": kind, "type": duck_type}
        count, nulls = con.execute(f"SELECT count({col}), count(*) - count({col}) FROM {rel}").fetchone()
        entry.update(count=count, nulls=nulls)
        if kind == "numeric" and count:
            mn, mx, mean, std, qs = con.execute(
                f"SELECT min({col})::DOUBLE, max({col})::DOUBLE, avg({col}::DOUBLE), "
                f"stddev_pop({col}::DOUBLE), quantile_cont({col}::DOUBLE, {list(QUANTILES)}) FROM {rel}").fetchone()
            entry.update(min=mn, max=mx, mean=mean, std=std,
                         quantiles={str(q): v for q, v in zip(QUANTILES, qs)})
            # the chart spans the finite values (an infinity would make every bucket infinitely wide)
            finite = f"(SELECT * FROM {rel} WHERE isfinite({col}::DOUBLE))"
            fmn, fmx = con.execute(f"SELECT min({col})::DOUBLE, max({col})::DOUBLE FROM {finite}").fetchone()
            if fmn is not None:
                entry["histogram"] = _histogram(con, finite, col, fmn, fmx)
            low, high = entry["quantiles"].get("0.01"), entry["quantiles"].get("0.99")
            if fmn is not None and low is not None and high is not None and high > low \
                    and (fmx - fmn) > 4 * (high - low):
                # a few outliers would squash the chart into one bar: show the 1st-99th percentiles
                shown = _histogram(con, f"(SELECT * FROM {rel} WHERE {col} BETWEEN {low!r} AND {high!r})", col,
                                   low, high)
                below, above = con.execute(f"SELECT count_if({col} < {low!r}), count_if({col} > {high!r}) "
                                           f"FROM {rel}").fetchone()
                entry["display_histogram"] = {**shown, "below": below, "above": above}
            # TFDV's standard histogram (10 buckets over the finite range, +/-inf and NaN apart): the
            # monitor's skew baseline, so distances mean what Vertex AI Model Monitoring's mean
            values = con.execute(f"SELECT {col}::DOUBLE FROM {rel} WHERE {col} IS NOT NULL").fetchnumpy()
            entry["tfdv_histogram"] = tfdv.histogram(next(iter(values.values()))).to_json()
        if kind == "categorical" or (is_integer_type(duck_type) and count):
            # integers may be codes (hours, areas): their frequencies are the IntegerLookup vocabulary
            distinct = con.execute(f"SELECT count(DISTINCT {col}) FROM {rel}").fetchone()[0]
            top = con.execute(f"SELECT {col}::VARCHAR, count(*) FROM {rel} WHERE {col} IS NOT NULL "
                              f"GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {MAX_DOMAIN}").fetchall()
            entry.update(distinct=distinct, frequencies={value: n for value, n in top},
                         domain_complete=distinct <= MAX_DOMAIN)
        stats["columns"][name] = entry
    con.close()
    return stats


def _histogram(con, rel: str, col: str, mn: float, mx: float) -> dict[str, list]:
    if mx == mn:
        return {"edges": [mn, mx], "counts": [con.execute(f"SELECT count({col}) FROM {rel}").fetchone()[0]]}
    counts = [0] * HISTOGRAM_BINS
    # halves, so a range wider than the largest double (-1.7e308 to 1.7e308) never overflows to inf
    half_range = mx / 2 - mn / 2
    for bucket, n in con.execute(
            f"SELECT least(floor(({col}::DOUBLE / 2 - {mn / 2!r}) / {half_range!r} * {HISTOGRAM_BINS}), "
            f"{HISTOGRAM_BINS - 1})::INT, count(*) FROM {rel} WHERE {col} IS NOT NULL GROUP BY 1").fetchall():
        counts[bucket] += n
    return {"edges": edges_between(mn, mx, HISTOGRAM_BINS), "counts": counts}


def infer_schema(stats: dict[str, Any]) -> dict[str, Any]:
    """A schema from training statistics: each column's kind and type, and categorical domains."""
    columns = []
    for name, entry in stats["columns"].items():
        column = {"name": name, "kind": entry["kind"], "type": entry["type"]}
        if entry["kind"] == "categorical" and entry.get("domain_complete"):
            column["domain"] = sorted(entry["frequencies"])
        columns.append(column)
    return {"version": SCHEMA_VERSION, "label": stats.get("label", ""), "columns": columns}


def load_json(path: str | Path, what: str) -> dict[str, Any]:
    path = local_path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} {str(path)!r} does not exist") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} {str(path)!r} is not valid JSON: {exc}") from exc


class ParquetProbe:
    """What check_split asks of a split, answered by DuckDB from its Parquet shards."""

    def __init__(self, dataset: str | Path):
        self.source = parquet_glob(dataset)
        self.rel = f"read_parquet('{self.source}')"
        self.con = duckdb.connect()

    def columns(self) -> dict[str, str]:
        return dict(describe_columns(self.con, self.source))

    def rows(self) -> int:
        return self.con.execute(f"SELECT count(*) FROM {self.rel}").fetchone()[0]

    def non_null(self, column: str) -> int:
        return self.con.execute(f"SELECT count({_q(column)}) FROM {self.rel}").fetchone()[0]

    def unseen(self, column: str, domain: list[str]) -> list[tuple[str, int]]:
        """Values (as strings) outside the domain with their row counts, most frequent first."""
        col = _q(column)
        self.con.execute("CREATE OR REPLACE TEMP TABLE _domain(v VARCHAR)")
        self.con.executemany("INSERT INTO _domain VALUES (?)", [[v] for v in domain])
        return self.con.execute(
            f"SELECT {col}::VARCHAR, count(*) FROM {self.rel} WHERE {col} IS NOT NULL AND "
            f"{col}::VARCHAR NOT IN (SELECT v FROM _domain) GROUP BY 1 ORDER BY 2 DESC, 1").fetchall()

    def close(self) -> None:
        self.con.close()


def check_split(name: str, dataset, schema: dict[str, Any], label_column: str,
                unseen_tolerance: float) -> tuple[int, list[Anomaly]]:
    """Anomalies of one split against the schema: columns, types, nulls, unseen categories.

    `dataset` is a directory of Parquet shards, or a probe answering the same questions another
    way (components/validate/bigquery_stats.py asks BigQuery).
    """
    anomalies: list[Anomaly] = []
    probe = ParquetProbe(dataset) if isinstance(dataset, (str, Path)) else dataset.probe()
    actual = probe.columns()
    rows = probe.rows()
    if rows == 0:
        anomalies.append(Anomaly("*", "empty_split", "the split has no rows; adjust the split fractions "
                                 "or the query", split=name))
    expected = {c["name"]: c for c in schema["columns"]}
    for column_name, column in expected.items():
        if column_name not in actual:
            anomalies.append(Anomaly(column_name, "missing_column",
                                     f"missing (the schema expects a {column['kind']} column of type {column['type']})",
                                     split=name))
            continue
        kind = column_kind(actual[column_name])
        if kind != column["kind"]:
            anomalies.append(Anomaly(column_name, "type_change",
                                     f"type changed from {column['type']} ({column['kind']}) to "
                                     f"{actual[column_name]} ({kind})", split=name))
        elif actual[column_name] != column["type"]:
            anomalies.append(Anomaly(column_name, "type_change",
                                     f"type changed from {column['type']} to {actual[column_name]}",
                                     blocking=False, split=name))
        if rows == 0:
            continue
        non_null = probe.non_null(column_name)
        if column_name == label_column and non_null < rows:
            anomalies.append(Anomaly(column_name, "null_label",
                                     f"the label is null in {rows - non_null} of {rows} rows; filter them "
                                     f"out in the query (WHERE {column_name} IS NOT NULL)", split=name))
        elif non_null == 0 and column_name != label_column:
            anomalies.append(Anomaly(column_name, "all_null",
                                     f"null in all {rows} rows: drop the column or fix its source", split=name))
        domain = column.get("domain")
        if domain is not None and kind == "categorical" and non_null:
            unseen = probe.unseen(column_name, domain)
            unseen_rows = sum(n for _, n in unseen)
            if unseen_rows:
                fraction = unseen_rows / non_null
                examples = ", ".join(repr(v) for v, _ in unseen[:5])
                anomalies.append(Anomaly(
                    column_name, "unseen_categories",
                    f"{len(unseen)} value(s) not in the schema's domain ({examples}) in {fraction:.2%} of "
                    f"rows; tolerance is {unseen_tolerance:.2%}",
                    blocking=fraction > unseen_tolerance, split=name))
    for column_name in actual:
        if column_name not in expected:
            anomalies.append(Anomaly(column_name, "extra_column", "not in the schema (ignored downstream)",
                                     blocking=False, split=name))
    probe.close()
    return rows, anomalies


@dataclass
class ValidationResult:
    statistics: dict[str, Any]
    schema: dict[str, Any]
    anomalies: list[Anomaly]
    split_rows: dict[str, int]
    schema_inferred: bool
    # the other splits on the training split's bins and categories (the report overlays them)
    split_counts: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    @property
    def blocking(self) -> list[Anomaly]:
        return [a for a in self.anomalies if a.blocking]

    def anomalies_json(self) -> dict[str, Any]:
        return {"blocking": len(self.blocking), "anomalies": [asdict(a) for a in self.anomalies],
                "split_rows": self.split_rows}


def split_source(path: str, metadata: dict[str, Any], jobs=None, maximum_bytes_billed: int | None = None):
    """What validate reads for one split: its Parquet shards, or, when BigQuery exported the split
    (ingest wrote its SELECT in the Dataset's metadata), that SELECT, which BigQuery computes the
    statistics and checks of, so no row is read here."""
    select = metadata.get("bigquery_select")
    if not select:
        return path
    from kfkit.components.validate.bigquery_stats import SqlSource, duckdb_type
    from kfkit.adapters.bigquery import BigQueryAdapter

    adapter = BigQueryAdapter(metadata["bigquery_project"], metadata.get("bigquery_location", "US"), jobs=jobs,
                              maximum_bytes_billed=maximum_bytes_billed)

    def query(sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        batches = adapter.query_to_arrow(sql, params, labels={"kfkit-component": "validate"}, what="statistics query")
        return [row for batch in batches for row in batch.to_pylist()]

    return SqlSource(select, [(c["name"], duckdb_type(c["type"])) for c in metadata["schema"]], query)


def validate(splits: dict[str, str | Path], label_column: str, schema: dict[str, Any] | None = None,
             unseen_tolerance: float = 0.01, train_split: str = "train") -> ValidationResult:
    """Statistics of the training split, the schema (given or inferred), anomalies of every split."""
    if train_split not in splits:
        raise ConfigError(f"no {train_split!r} split given; got {', '.join(splits)}")
    if not 0 <= unseen_tolerance <= 1:
        raise ConfigError(f"unseen_tolerance must be between 0 and 1, got {unseen_tolerance}")
    stats = compute_statistics(splits[train_split], label_column)
    if label_column and label_column not in stats["columns"]:
        raise ValidationError(f"label column {label_column!r} is not in the {train_split!r} split; columns "
                              f"are: {', '.join(stats['columns'])}")
    inferred = schema is None
    if inferred:
        schema = infer_schema(stats)
    anomalies, split_rows = [], {}
    for name, dataset in splits.items():
        rows, found = check_split(name, dataset, schema, label_column, unseen_tolerance)
        split_rows[name] = rows
        # a domain inferred from the training split itself cannot have unseen values there
        anomalies += found
    if label_column:
        label = stats["columns"][label_column]
        if label["kind"] == "categorical" and label.get("distinct", 0) < 2 and stats["rows"]:
            anomalies.append(Anomaly(label_column, "single_class",
                                     f"the label has {label.get('distinct', 0)} class(es) in the training split; "
                                     "a classifier needs at least two", split=train_split))
    from kfkit.components.validate.overlay import split_distribution

    counts = {name: split_distribution(dataset, stats) for name, dataset in splits.items()
              if name != train_split and isinstance(dataset, (str, Path)) and split_rows.get(name)}
    return ValidationResult(stats, schema, anomalies, split_rows, inferred, counts)


def render_report(result: ValidationResult, title: str = "kfkit data validation") -> str:
    from kfkit.components.validate.report import render

    return render(result, title)
