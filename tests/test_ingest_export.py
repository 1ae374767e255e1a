"""Ingest at scale: BigQuery splits and exports, and its SQL splits every row as the streaming path does.

The split expression is BigQuery's documented way to split reproducibly,
ABS(MOD(FARM_FINGERPRINT(key), n)) (BigQuery docs, "Hash functions": FARM_FINGERPRINT; Google Cloud's
"ML data splitting" guidance). Here the SQL kfkit generates runs on the local warehouse, whose
FARM_FINGERPRINT is tested against BigQuery's documented values (tests/test_split_reference.py),
and its splits are compared row by row with the streaming path's.
"""

import json

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from google.cloud import bigquery
from google.protobuf import json_format
from google_cloud_pipeline_components.proto.gcp_resources_pb2 import GcpResources

from kfkit.components.ingest import bigquery_split as bq
from kfkit.components.ingest.ingest import SplitSpec, run_ingest
from kfkit.adapters.bigquery import BigQueryAdapter
from kfkit.cloud_jobs import CloudJobs
from kfkit.errors import IngestError, QueryError
from tests.bigquery_local import LocalBigQuery, LocalReadClient
from tests.conftest import DEFAULT_SPLIT, PENGUINS, split_outputs

ORDER = [("body_mass_g", "ascending"), ("culmen_length_mm", "ascending"), ("flipper_length_mm", "ascending")]


def gcs_outputs(gcs_root):
    return {name: gcs_root / "bucket" / "run-1" / f"{name}_data" for name in ("train", "eval", "test")}


def cloud(warehouse, gcs_root, tmp_path, **kwargs):
    client = LocalBigQuery(warehouse, gcs_root, **kwargs)
    jobs = CloudJobs(str(tmp_path / "gcp_resources"), sleep=lambda s: None)
    return client, BigQueryAdapter("my-proj", "US", client=client, read_client=LocalReadClient(warehouse), jobs=jobs,
                                   maximum_bytes_billed=10**12)


def test_bigquery_exports_each_split_with_the_same_rows_and_snapshot_as_the_streaming_path(
        warehouse, penguin_splits, tmp_path):
    gcs = tmp_path / "gcs"
    client, adapter = cloud(warehouse, gcs, tmp_path)
    outputs = gcs_outputs(gcs)

    result = run_ingest(PENGUINS, outputs, split=DEFAULT_SPLIT, label_column="species", backend="bigquery",
                        adapter=adapter, export_threshold_bytes=0, gcs_fuse_root=str(gcs))
    local = run_ingest(PENGUINS, split_outputs(tmp_path / "local"), split=DEFAULT_SPLIT, label_column="species",
                       warehouse=warehouse)

    assert result.extra["path"] == "bigquery-export"
    assert result.snapshot == local.snapshot and result.rows == local.rows
    for name, path in outputs.items():
        exported = ds.dataset(path).to_table().sort_by(ORDER)
        streamed = ds.dataset(penguin_splits[name]).to_table().sort_by(ORDER)
        assert exported.equals(streamed)
        assert result.shards[name] == len(list(path.glob("part-*.parquet"))) > 0


def test_no_row_is_read_by_the_component_when_bigquery_exports(warehouse, tmp_path):
    gcs = tmp_path / "gcs"
    client, adapter = cloud(warehouse, gcs, tmp_path)

    run_ingest(PENGUINS, gcs_outputs(gcs), split=DEFAULT_SPLIT, label_column="species", backend="bigquery",
               adapter=adapter, export_threshold_bytes=0, gcs_fuse_root=str(gcs))

    assert adapter.read_client.calls == []
    exports = [c[1] for c in client.calls if c[0] == "query" and c[1].startswith("EXPORT DATA")]
    assert [e.split("'")[1] for e in exports] == [f"gs://bucket/run-1/{n}_data/part-*.parquet"
                                                 for n in ("train", "eval", "test")]


def test_a_small_result_is_streamed_even_when_the_outputs_are_on_cloud_storage(warehouse, tmp_path):
    gcs = tmp_path / "gcs"
    client, adapter = cloud(warehouse, gcs, tmp_path)

    result = run_ingest(PENGUINS, gcs_outputs(gcs), split=DEFAULT_SPLIT, label_column="species", backend="bigquery",
                        adapter=adapter, gcs_fuse_root=str(gcs))

    assert result.extra["path"] == "streamed"
    assert not [c for c in client.calls if c[0] == "query" and c[1].startswith("EXPORT DATA")]
    assert [c[0] for c in adapter.read_client.calls] == ["create_read_session", "read_rows"]


def test_local_outputs_are_streamed_whatever_the_size(warehouse, tmp_path):
    client, adapter = cloud(warehouse, tmp_path / "gcs", tmp_path)

    result = run_ingest(PENGUINS, split_outputs(tmp_path / "out"), split=DEFAULT_SPLIT, label_column="species",
                        backend="bigquery", adapter=adapter, export_threshold_bytes=0,
                        gcs_fuse_root=str(tmp_path / "gcs"))

    assert result.extra["path"] == "streamed"


def test_the_generated_split_sql_text():
    schema = pa.schema([("trip_id", pa.string()), ("area", pa.int64()), ("fare", pa.float64())])
    ranges = bq.bucket_ranges([8000, 9000, 10000], ["train", "eval", "test"])

    select = bq.split_select_sql("p.d.t", schema, ["trip_id", "area"], *ranges["eval"])
    export = bq.export_sql(select, "gs://b/root/eval_data/")

    assert select == ("SELECT * FROM `p.d.t`\nWHERE ABS(MOD(FARM_FINGERPRINT(CONCAT(IFNULL(`trip_id`, ''), "
                      "'\\x1f', IFNULL(CAST(`area` AS STRING), ''))), 10000)) >= 8000 AND "
                      "ABS(MOD(FARM_FINGERPRINT(CONCAT(IFNULL(`trip_id`, ''), '\\x1f', "
                      "IFNULL(CAST(`area` AS STRING), ''))), 10000)) < 9000")
    assert export.startswith("EXPORT DATA OPTIONS (uri = 'gs://b/root/eval_data/part-*.parquet', format = 'PARQUET', "
                             "compression = 'SNAPPY', overwrite = true) AS\nSELECT * FROM `p.d.t`")
    assert bq.bucket_ranges([0, 10000], ["a", "b"]) == {"a": (0, 0), "b": (0, 10000)}
    assert "WHERE FALSE" in bq.split_select_sql("t", schema, ["trip_id"], 0, 0)


TRICKY_FLOATS = [0.1 + 0.2, 0.1234567890123456, 1.5e-05, 1e15, 1234567890123456.0, -0.0, float("nan"), float("inf"),
                 39.1, None, 5e-324, 12.25]


@pytest.mark.parametrize("key", ["*", "trip_id", "trip_id,area", "flag", "day", "fare"])
def test_the_split_sql_run_locally_puts_every_row_where_the_streaming_path_does(warehouse, tmp_path, key):
    rows = 3000
    table = pa.table({
        "trip_id": pa.array([None if i % 97 == 0 else f"t{i}" for i in range(rows)]),
        "area": pa.array([None if i % 89 == 0 else i % 77 - 30 for i in range(rows)], pa.int64()),
        "flag": pa.array([i % 3 == 0 for i in range(rows)]),
        "day": pa.array([19000 + i % 400 for i in range(rows)], pa.int32()).cast(pa.date32()),
        "fare": pa.array([TRICKY_FLOATS[i % len(TRICKY_FLOATS)] if i % 2 else i / 7 for i in range(rows)], pa.float64()),
        "n": pa.array(range(rows), pa.int64()),
    })
    name = warehouse.write_table(f"p.split_test.rows_{key.replace(',', '_').replace('*', 'all')}", table)
    split = SplitSpec({"train": 0.7, "eval": 0.2, "test": 0.1}, key)
    outputs = split_outputs(tmp_path)
    streamed = run_ingest(f"SELECT * FROM `{name}`", outputs, split=split, label_column="n", warehouse=warehouse)
    ranges = bq.bucket_ranges(split.upper_bounds(), list(split.fractions))

    summary = next(iter(warehouse.query_batches(bq.summary_sql(name, table.schema, split.key_columns, ranges))))
    summary = summary.to_pylist()[0]

    assert bq.snapshot_id(summary["row_count"], summary["fingerprint_sum"]) == streamed.snapshot
    for split_name, (low, high) in ranges.items():
        sql_rows = [n for batch in warehouse.query_batches(
            bq.split_select_sql(name, table.schema, split.key_columns, low, high)) for n in batch.column("n").to_pylist()]
        assert sorted(sql_rows) == sorted(ds.dataset(outputs[split_name]).to_table().column("n").to_pylist())
        assert summary[f"rows_{split_name}"] == streamed.rows[split_name]


def test_a_key_type_bigquery_spells_differently_is_refused_naming_the_column():
    schema = pa.schema([("trip_id", pa.string()), ("pickup", pa.timestamp("us", tz="UTC"))])

    with pytest.raises(IngestError, match="column 'pickup' is timestamp.*STRING, INT64, FLOAT64, BOOL or DATE"):
        bq.key_sql(schema, None)
    with pytest.raises(IngestError, match="split key column 'pickup'"):
        bq.key_sql(schema, ["pickup"])


def test_export_goes_only_to_cloud_storage():
    with pytest.raises(IngestError, match="'/tmp/x' is not a gs:// prefix"):
        bq.export_sql("SELECT 1", "/tmp/x")


def test_the_query_costing_more_than_maximum_bytes_billed_is_refused_before_any_job(warehouse, tmp_path):
    gcs = tmp_path / "gcs"
    client = LocalBigQuery(warehouse, gcs, bytes_processed=2_345_678_901_234)
    adapter = BigQueryAdapter("my-proj", client=client, read_client=LocalReadClient(warehouse),
                              maximum_bytes_billed=1_000_000_000_000)

    with pytest.raises(QueryError, match=r"would process 2\.3 TB \(2,345,678,901,234 bytes, BigQuery's dry-run "
                                         r"estimate\), more than maximum_bytes_billed=1,000,000,000,000"):
        run_ingest(PENGUINS, gcs_outputs(gcs), split=DEFAULT_SPLIT, label_column="species", backend="bigquery",
                   adapter=adapter, gcs_fuse_root=str(gcs))

    assert [c[2].dry_run for c in client.calls if c[0] == "query"] == [True]
    assert not gcs.exists()


def test_every_job_carries_maximum_bytes_billed(warehouse, tmp_path):
    gcs = tmp_path / "gcs"
    client, adapter = cloud(warehouse, gcs, tmp_path)

    run_ingest(PENGUINS, gcs_outputs(gcs), split=DEFAULT_SPLIT, label_column="species", backend="bigquery",
               adapter=adapter, export_threshold_bytes=0, gcs_fuse_root=str(gcs))

    jobs = [c[2] for c in client.calls if c[0] == "query" and not c[2].dry_run]
    assert len(jobs) == 5  # the query, the split summary, three exports
    assert {j.maximum_bytes_billed for j in jobs} == {10**12}


@pytest.mark.parametrize("value", [0, -1])
def test_maximum_bytes_billed_must_be_positive(value):
    with pytest.raises(QueryError, match=f"maximum_bytes_billed must be a positive number of bytes, got {value}"):
        BigQueryAdapter("p", maximum_bytes_billed=value)


def test_bigquerys_own_bytes_billed_refusal_names_the_cap():
    from google.api_core import exceptions as gexc

    adapter = BigQueryAdapter("p", client=object(), maximum_bytes_billed=5_000)
    error = adapter._wrap(gexc.BadRequest("Query exceeded limit for bytes billed: 5000. 10485760 or higher required."),
                          "query job")

    assert "would bill more than maximum_bytes_billed=5,000 bytes" in str(error)


def test_gcp_resources_lists_every_bigquery_job_in_gcpcs_format(warehouse, tmp_path):
    gcs = tmp_path / "gcs"
    client, adapter = cloud(warehouse, gcs, tmp_path)

    run_ingest(PENGUINS, gcs_outputs(gcs), split=DEFAULT_SPLIT, label_column="species", backend="bigquery",
               adapter=adapter, export_threshold_bytes=0, gcs_fuse_root=str(gcs))

    text = (tmp_path / "gcp_resources").read_text()
    parsed = json_format.Parse(text, GcpResources())  # GCPC's own proto accepts it
    assert [r.resource_type for r in parsed.resources] == ["BigQueryJob"] * 5
    assert [r.resource_uri for r in parsed.resources] == [j.self_link for j in client.jobs]
    assert parsed.resources[0].resource_uri.startswith(
        "https://www.googleapis.com/bigquery/v2/projects/my-proj/jobs/kfkit_ingest_")
    assert json.loads(text)["resources"][0]["resourceType"] == "BigQueryJob"


def test_jobs_are_polled_with_backoff_until_done(warehouse, tmp_path):
    slept = []
    client = LocalBigQuery(warehouse, tmp_path, polls_until_done=6)
    adapter = BigQueryAdapter("my-proj", client=client, jobs=CloudJobs(sleep=slept.append))

    adapter.run_query("SELECT 1 AS x")

    assert slept == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert [c[0] for c in client.calls].count("done") == 6


def test_a_bigquery_destination_job_replaces_its_table_in_standard_sql(warehouse, tmp_path):
    client, adapter = cloud(warehouse, tmp_path / "gcs", tmp_path)
    from kfkit.adapters.bigquery import TableRef

    adapter.query_to_table("SELECT 1 AS x", TableRef("my-proj", "kfkit_staging", "t1"))

    config = [c[2] for c in client.calls if c[0] == "query"][0]
    assert config.write_disposition == bigquery.WriteDisposition.WRITE_TRUNCATE
    assert config.use_legacy_sql is False
    assert adapter.table_size(TableRef("my-proj", "kfkit_staging", "t1"))[0] == 1


def test_float_keys_are_spelled_as_bigquerys_cast_to_string_spells_them():
    import random
    import struct

    from kfkit.warehouse.json_functions import double_to_string, doubles_to_strings

    rng = random.Random(7)
    values = TRICKY_FLOATS + [1e21, 1e-7, -1e-7, 123456789012345.0, 1.7976931348623157e308, float("-inf")]
    values += [struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0] for _ in range(5000)]
    values += [round(rng.uniform(-1000, 1000), rng.randint(0, 14)) for _ in range(5000)]

    spelled = doubles_to_strings(pa.array(values, pa.float64())).to_pylist()

    # double_to_string is ZetaSQL's RoundTripDoubleToString, the conformance cases' CAST(FLOAT64 AS STRING)
    assert spelled == [None if v is None else double_to_string(v) for v in values]
    assert spelled[:3] == ["0.30000000000000004", "0.12345678901234559", "1.5e-05"]


def test_names_and_uris_are_quoted_with_bigquerys_escapes():
    # BigQuery lexical structure: quoted identifiers and string literals escape \\ and the quote itself
    assert bq.quote("odd`name\\x") == "`odd\\`name\\\\x`"
    assert bq.string_literal("gs://b/it's\\x") == "'gs://b/it\\'s\\\\x'"
    assert "uri = 'gs://b/BOX/part-*.parquet'" in bq.export_sql("SELECT 1", "gs://b/BOX/")


def test_an_empty_result_has_the_streaming_paths_empty_snapshot_id():
    assert bq.snapshot_id(0, None) == "0-0000000000000000"
    assert bq.snapshot_id(2, -1) == "2-ffffffffffffffff"  # the sum is taken modulo 2^64, as unsigned


def test_the_whole_row_refusal_says_the_whole_row_is_the_key():
    schema = pa.schema([("pickup", pa.timestamp("us", tz="UTC"))])

    with pytest.raises(IngestError, match=r"^the whole row is the split key and column 'pickup' is timestamp.*"
                                          r"keep the result under export_threshold_bytes so it is split while streaming$"):
        bq.key_sql(schema, None)


@pytest.mark.parametrize("count, shown", [(0, "0 bytes"), (999, "999 bytes"), (1000, "1.0 KB"), (1_500_000, "1.5 MB"),
                                          (2_345_678_901, "2.3 GB"), (2_345_678_901_234, "2.3 TB"),
                                          (5_000_000_000_000_000, "5000.0 TB")])
def test_byte_counts_are_shown_in_decimal_units_as_bigquerys_console_does(count, shown):
    from kfkit.adapters.bigquery import human_bytes

    assert human_bytes(count) == shown


def test_a_query_of_exactly_maximum_bytes_billed_runs_and_its_estimate_is_logged(warehouse, tmp_path, caplog):
    client = LocalBigQuery(warehouse, tmp_path, bytes_processed=5_000)
    adapter = BigQueryAdapter("my-proj", client=client, maximum_bytes_billed=5_000)

    with caplog.at_level("INFO", logger="kfkit.bigquery"):
        schema, estimate = adapter.check_cost("SELECT 1 AS x")

    assert estimate == 5_000 and schema.names == ["x"]
    assert "BigQuery dry run: the query would process 5.0 KB" in caplog.messages


def test_a_job_without_a_self_link_is_named_by_its_project_id_and_location(warehouse, tmp_path):
    from kfkit.cloud_jobs import CloudJobs

    client = LocalBigQuery(warehouse, tmp_path, location="EU")
    jobs = CloudJobs(str(tmp_path / "gcp_resources"), sleep=lambda s: None)
    adapter = BigQueryAdapter("my-proj", "EU", client=client, jobs=jobs)
    original = client.query

    def without_link(*args, **kwargs):
        job = original(*args, **kwargs)
        job.self_link = None
        return job

    client.query = without_link
    adapter.run_query("SELECT 1 AS x", labels={"team": "a"})

    uri = json.loads((tmp_path / "gcp_resources").read_text())["resources"][0]["resourceUri"]
    assert uri == "https://www.googleapis.com/bigquery/v2/projects/my-proj/jobs/kfkit_0?location=EU"
    config = [c for c in client.calls if c[0] == "query"][0][2]
    assert config.labels == {"team": "a"} and [c[4] for c in client.calls if c[0] == "query"] == ["kfkit_"]
