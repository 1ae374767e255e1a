"""validate's statistics and checks computed by SQL on BigQuery give the DuckDB path's numbers.

The BigQuery SQL (components/validate/bigquery_stats.py) runs here on the local warehouse, over a
table holding the same rows as the Parquet split the DuckDB path reads; every number must agree.
PERCENTILE_CONT is BigQuery's exact, linearly interpolated percentile (BigQuery docs, "Navigation
functions": PERCENTILE_CONT), the definition DuckDB's quantile_cont shares.
"""

import datetime as dt
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kfkit.components.ingest import bigquery_split as bq
from kfkit.components.validate.bigquery_stats import SqlSource, compute_statistics as sql_statistics, duckdb_type
from kfkit.components.validate.validate import check_split, compute_statistics, infer_schema, validate
from tests.conftest import DEFAULT_SPLIT, PENGUINS


def local_query(warehouse):
    def query(sql, params=None):
        return [row for batch in warehouse.query_batches(sql, params) for row in batch.to_pylist()]
    return query


def same(a, b, path="stats"):
    """Equal, floats to 1e-12 relative (the engines may sum in another order)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert list(a) == list(b), f"{path}: keys {list(a)} != {list(b)}"
        for key in a:
            same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        assert len(a) == len(b), f"{path}: {a} != {b}"
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12, abs=1e-12), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def as_sql_source(warehouse, name: str, table: pa.Table) -> SqlSource:
    warehouse.write_table(name, table)
    return SqlSource(f"SELECT * FROM `{name}`", [(f.name, duckdb_type(str(f.type))) for f in table.schema],
                     local_query(warehouse))


def mixed_rows(n=2000) -> pa.Table:
    return pa.table({
        "fare": pa.array([None if i % 50 == 0 else (1e6 if i == 7 else (i % 97) * 0.37) for i in range(n)]),
        "trips": pa.array([None if i % 31 == 0 else i % 24 for i in range(n)], pa.int64()),
        "constant": pa.array([2.5] * n),
        "extremes": pa.array([float("inf") if i % 101 == 0 else (float("-inf") if i % 103 == 0 else i / 3)
                              for i in range(n)]),
        "company": pa.array([None if i % 13 == 0 else f"c{i % 17}" for i in range(n)]),
        "flag": pa.array([i % 3 == 0 for i in range(n)]),
        "empty": pa.array([None] * n, pa.string()),
        "day": pa.array([dt.date(2024, 1, 1) + dt.timedelta(days=i % 60) for i in range(n)]),
        "label": pa.array([f"k{i % 3}" for i in range(n)]),
    })


def test_sql_statistics_equal_the_duckdb_statistics_of_the_same_rows(warehouse, tmp_path):
    table = mixed_rows()
    pq.write_table(table, tmp_path / "part-0.parquet")
    source = as_sql_source(warehouse, "p.validate.mixed", table)

    expected = compute_statistics(tmp_path, "label")
    actual = sql_statistics(source, "label")

    same(actual, expected)
    assert "display_histogram" in actual["columns"]["fare"]  # the outlier made the chart zoom
    assert actual["columns"]["extremes"]["tfdv_histogram"]["buckets"][0][0] == "-inf"


def test_bigquery_statistics_of_an_exported_split_equal_the_streamed_splits(warehouse, penguin_splits):
    rows = pa.Table.from_batches(list(warehouse.query_batches(PENGUINS)))
    name = warehouse.write_table("my-proj.kfkit_staging.ingest_penguins", rows)
    ranges = bq.bucket_ranges(DEFAULT_SPLIT.upper_bounds(), list(DEFAULT_SPLIT.fractions))
    select = bq.split_select_sql(name, rows.schema, DEFAULT_SPLIT.key_columns, *ranges["train"])
    source = SqlSource(select, [(f.name, duckdb_type(str(f.type))) for f in rows.schema], local_query(warehouse))

    same(sql_statistics(source, "species"), compute_statistics(penguin_splits["train"], "species"))


def test_sql_split_checks_find_the_same_anomalies(warehouse, tmp_path):
    train, serving = mixed_rows(), mixed_rows(600)
    serving = serving.set_column(serving.schema.get_field_index("company"), "company",
                                 pa.array([f"new{i % 4}" if i % 5 == 0 else "c1" for i in range(600)]))
    serving = serving.set_column(serving.schema.get_field_index("label"), "label",
                                 pa.array([None if i % 9 == 0 else "k1" for i in range(600)]))
    pq.write_table(serving, tmp_path / "part-0.parquet")
    schema = infer_schema(compute_statistics(_parquet(train, tmp_path / "train"), "label"))
    source = as_sql_source(warehouse, "p.validate.serving", serving)

    rows_sql, found_sql = check_split("eval", source, schema, "label", 0.01)
    rows_duck, found_duck = check_split("eval", tmp_path, schema, "label", 0.01)

    assert rows_sql == rows_duck == 600
    assert [str(a) for a in found_sql] == [str(a) for a in found_duck]
    assert {a.kind for a in found_sql} >= {"unseen_categories", "null_label", "all_null"}


def test_a_whole_validation_runs_on_sql_sources(warehouse, tmp_path):
    table = mixed_rows()
    source = as_sql_source(warehouse, "p.validate.whole", table)

    result = validate({"train": source, "eval": source, "test": source}, "label")

    assert result.split_rows == {"train": 2000, "eval": 2000, "test": 2000}
    assert [(a.kind, a.column) for a in result.blocking] == [("all_null", "empty")] * 3
    assert result.schema == infer_schema(compute_statistics(_parquet(table, tmp_path / "t"), "label"))


def _parquet(table: pa.Table, directory):
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, directory / "part-0.parquet")
    return directory


def test_validate_asks_bigquery_about_a_split_bigquery_exported_and_reads_no_row(warehouse, penguin_splits, tmp_path,
                                                                                monkeypatch):
    from google.cloud import bigquery, bigquery_storage

    from kfkit.components.ingest.ingest import run_ingest
    from kfkit.components.validate.validate import split_source
    from kfkit.adapters.bigquery import BigQueryAdapter
    from kfkit.cloud_jobs import CloudJobs
    from kfkit.tabular import shards
    from tests.bigquery_local import LocalBigQuery, LocalReadClient

    gcs = tmp_path / "gcs"
    client, reader = LocalBigQuery(warehouse, gcs), LocalReadClient(warehouse)
    adapter = BigQueryAdapter("my-proj", client=client, read_client=reader, jobs=CloudJobs(sleep=lambda s: None))
    outputs = {n: gcs / "bucket" / "run" / f"{n}_data" for n in ("train", "eval", "test")}
    ingested = run_ingest(PENGUINS, outputs, split=DEFAULT_SPLIT, label_column="species", backend="bigquery",
                          adapter=adapter, export_threshold_bytes=0, gcs_fuse_root=str(gcs))
    # validate builds its own adapter: the SDK's clients are the fakes from here on
    monkeypatch.setattr(bigquery, "Client", lambda project=None, location=None: client)
    monkeypatch.setattr(bigquery_storage, "BigQueryReadClient", lambda: reader)
    metadata = {"bigquery_select": ingested.extra["selects"]["train"], "bigquery_project": "my-proj",
                "bigquery_location": "US", "schema": ingested.schema}
    before = len(client.calls)

    stats = compute_statistics(split_source(str(outputs["train"]), metadata), "species")

    same(stats, compute_statistics(penguin_splits["train"], "species"))
    assert reader.calls == []
    labels = [c[2].labels for c in client.calls[before:] if c[0] == "query"]
    assert labels and all(label == {"kfkit-component": "validate"} for label in labels)
    assert len(shards(outputs["train"])) == ingested.shards["train"]  # what train reads: the exported shards


def test_a_split_without_a_bigquery_select_is_read_from_its_shards(tmp_path):
    from kfkit.components.validate.validate import split_source

    assert split_source(str(tmp_path), {"rows": 3}) == str(tmp_path)
