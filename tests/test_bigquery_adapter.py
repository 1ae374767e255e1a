"""The BigQuery adapter checked at the SDK boundary: fake clients record exactly what would be sent."""

from types import SimpleNamespace

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from google.api_core import exceptions as gexc
from google.cloud import bigquery
from google.cloud.bigquery_storage import BigQueryReadClient, types

from kfkit.components.ingest.ingest import run_ingest
from kfkit.adapters.bigquery import BigQueryAdapter, query_parameters
from kfkit.errors import QueryError
from tests.bigquery_storage_api import arrow_schema, read_rows_responses
from tests.fakes import bound_to
from tests.conftest import DEFAULT_SPLIT, PENGUINS, leftovers, split_outputs


@bound_to(bigquery.QueryJob)
class FakeJob:
    def __init__(self, schema, rows=None):
        self.schema = schema
        self.rows = rows
        self.job_id = "kfkit_ingest_123"
        self.self_link = "https://www.googleapis.com/bigquery/v2/projects/my-proj/jobs/kfkit_ingest_123?location=US"
        self.total_bytes_processed = 1000

    def result(self, job_retry=None):
        return self if self.rows is None else self.rows

    def done(self, retry=None, timeout=128, reload=True):
        return True

    def cancel(self, client=None, retry=None, timeout=None):
        return True


@bound_to(bigquery.Client)
class FakeClient:
    def __init__(self, schema, fail=None):
        self.calls = []
        self.schema = schema
        self.fail = fail

    def query(self, sql, job_config=None, location=None, job_id_prefix=None):
        self.calls.append(("query", sql, job_config, location, job_id_prefix))
        if self.fail:
            raise self.fail
        return FakeJob(self.schema)

    def create_dataset(self, dataset, exists_ok=False):
        self.calls.append(("create_dataset", dataset, exists_ok))

    def get_table(self, table, retry=None, timeout=None):
        return SimpleNamespace(num_rows=1, num_bytes=1)


@bound_to(BigQueryReadClient)
class FakeReadClient:
    """Serves the given Arrow table as two streams of pages, like the Storage Read API."""

    def __init__(self, table: pa.Table):
        self.table = table
        self.calls = []

    def create_read_session(self, parent, read_session, max_stream_count):
        self.calls.append(("create_read_session", parent, read_session, max_stream_count))
        return SimpleNamespace(streams=[SimpleNamespace(name="s0"), SimpleNamespace(name="s1")],
                               arrow_schema=arrow_schema(self.table.schema))

    def read_rows(self, name):
        self.calls.append(("read_rows", name))
        half = self.table.num_rows // 2
        part = self.table.slice(0, half) if name == "s0" else self.table.slice(half)
        return list(read_rows_responses(part, 50))


def bq_schema(table: pa.Table):
    types_ = {pa.string(): "STRING", pa.float64(): "FLOAT64", pa.int64(): "INT64"}
    return [bigquery.SchemaField(f.name, types_[f.type]) for f in table.schema]


@pytest.fixture
def penguins(warehouse) -> pa.Table:
    return pa.Table.from_batches(list(warehouse.query_batches(PENGUINS)))


def test_bigquery_ingest_sends_dry_run_then_query_job_with_destination_labels_and_parameters(penguins, tmp_path):
    client, reader = FakeClient(bq_schema(penguins)), FakeReadClient(penguins)
    adapter = BigQueryAdapter("my-proj", "EU", client=client, read_client=reader)
    query = PENGUINS + " AND island = @island"

    result = run_ingest(query, split_outputs(tmp_path), split=DEFAULT_SPLIT, label_column="species",
                        backend="bigquery", query_parameters={"island": "Dream"}, adapter=adapter,
                        labels={"Team": "Penguin Research"})

    (_, sql1, dry, loc1, _), (_, dataset, exists_ok), (_, sql2, job, loc2, prefix) = client.calls
    assert dry.dry_run is True and dry.use_query_cache is False and sql1 == query and loc1 == "EU"
    assert dry.query_parameters == [bigquery.ScalarQueryParameter("island", "STRING", "Dream")]
    assert dataset.dataset_id == "kfkit_staging" and dataset.location == "EU" and exists_ok
    assert dataset.default_table_expiration_ms == 7 * 24 * 3600 * 1000
    assert sql2 == query and loc2 == "EU" and prefix == "kfkit_ingest_"
    assert job.destination.project == "my-proj" and job.destination.dataset_id == "kfkit_staging"
    assert job.destination.table_id.startswith("ingest_")
    assert job.write_disposition == "WRITE_TRUNCATE" and job.use_legacy_sql is False
    assert job.labels == {"kfkit-component": "ingest", "team": "penguin-research"}
    assert job.query_parameters == [bigquery.ScalarQueryParameter("island", "STRING", "Dream")]
    assert result.source_table == f"my-proj.kfkit_staging.{job.destination.table_id}"
    assert result.job_id == "kfkit_ingest_123"


def test_bigquery_ingest_reads_the_destination_with_the_storage_read_api_in_arrow(penguins, tmp_path):
    client, reader = FakeClient(bq_schema(penguins)), FakeReadClient(penguins)
    adapter = BigQueryAdapter("my-proj", "US", client=client, read_client=reader)

    result = run_ingest(PENGUINS, split_outputs(tmp_path), split=DEFAULT_SPLIT, label_column="species",
                        backend="bigquery", adapter=adapter)

    _, parent, session, streams = reader.calls[0]
    assert parent == "projects/my-proj"
    assert session.table == f"projects/my-proj/datasets/kfkit_staging/tables/{result.extra['table']}"
    assert session.data_format == types.DataFormat.ARROW
    assert [c[1] for c in reader.calls[1:]] == ["s0", "s1"]
    assert sum(result.rows.values()) == penguins.num_rows


def test_bigquery_and_local_backends_put_each_row_in_the_same_split(penguins, penguin_splits, warehouse, tmp_path):
    adapter = BigQueryAdapter("p", client=FakeClient(bq_schema(penguins)), read_client=FakeReadClient(penguins))
    outputs = split_outputs(tmp_path)

    remote = run_ingest(PENGUINS, outputs, split=DEFAULT_SPLIT, label_column="species", backend="bigquery",
                        adapter=adapter)
    local = run_ingest(PENGUINS, split_outputs(tmp_path / "local"), split=DEFAULT_SPLIT, label_column="species",
                       warehouse=warehouse)

    assert remote.snapshot == local.snapshot
    order = [("body_mass_g", "ascending"), ("culmen_length_mm", "ascending")]
    for name in outputs:
        remote = ds.dataset(outputs[name]).to_table().sort_by(order)
        local = ds.dataset(penguin_splits[name]).to_table().sort_by(order)
        assert remote.equals(local)


@pytest.mark.parametrize("error, message", [
    (gexc.NotFound("Not found: Table my-proj:d.missing"), "not found: Not found: Table my-proj:d.missing"),
    (gexc.BadRequest("Syntax error: Unexpected keyword WHERE at [1:20]"), "BigQuery rejected the query: Syntax error"),
])
def test_bigquery_errors_become_clear_query_errors_before_any_output(error, message, tmp_path):
    adapter = BigQueryAdapter("my-proj", client=FakeClient([], fail=error), read_client=FakeReadClient(pa.table({})))
    (tmp_path / "out").mkdir()

    with pytest.raises(QueryError, match=message):
        run_ingest("SELECT a FROM d.missing", split_outputs(tmp_path / "out"), split=DEFAULT_SPLIT,
                   label_column="a", backend="bigquery", adapter=adapter)
    assert leftovers(tmp_path / "out") == []


def test_query_parameters_get_bigquery_types():
    import datetime as dt
    params = query_parameters({"n": 3, "x": 0.5, "flag": True, "s": "a", "d": dt.date(2024, 1, 2), "ids": [1, 2]})
    assert [(p.name, getattr(p, "type_", None) or p.array_type) for p in params] == [
        ("n", "INT64"), ("x", "FLOAT64"), ("flag", "BOOL"), ("s", "STRING"), ("d", "DATE"), ("ids", "INT64")]


def test_bigquery_backend_requires_a_project():
    with pytest.raises(QueryError, match="project is required"):
        BigQueryAdapter("")


def test_monitor_reads_vertex_request_logs_with_the_window_as_query_parameters():
    import datetime as dt
    import json as _json

    from kfkit.components.monitor.monitor import read_bigquery_logs

    @bound_to(bigquery.Client)
    class LogClient(FakeClient):
        def query(self, sql, job_config=None, location=None, job_id_prefix=None):
            self.calls.append(("query", sql, job_config, location, job_id_prefix))
            table = pa.table({"request_payload": [[_json.dumps({"instances": [{"x": 1.0}, {"x": 2.0}]})]],
                              "response_payload": [[_json.dumps({"predictions": [{"classes": "a"}, {"classes": "b"}]})]]})
            return FakeJob([], rows=SimpleNamespace(to_arrow=lambda bqstorage_client: table))

    client = LogClient([])
    adapter = BigQueryAdapter("p", "US", client=client, read_client=object())

    rows, predictions = read_bigquery_logs(adapter, "p.logs.req", 0.0, 3600.0)

    _, sql, config, _, _ = client.calls[0]
    assert "FROM `p.logs.req`" in sql and "logging_time >= @window_start AND logging_time < @window_end" in sql
    assert config.query_parameters == [
        bigquery.ScalarQueryParameter("window_start", "TIMESTAMP", dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)),
        bigquery.ScalarQueryParameter("window_end", "TIMESTAMP", dt.datetime(1970, 1, 1, 1, tzinfo=dt.timezone.utc))]
    assert [r["x"] for r in rows] == [1.0, 2.0]
    assert [p["prediction"] for p in predictions] == ["a", "b"]


def test_dry_run_and_the_query_job_use_standard_sql_and_the_dataset_is_labelled(penguins, tmp_path):
    client, reader = FakeClient(bq_schema(penguins)), FakeReadClient(penguins)
    adapter = BigQueryAdapter("my-proj", "EU", client=client, read_client=reader)

    run_ingest(PENGUINS, split_outputs(tmp_path), split=DEFAULT_SPLIT, label_column="species", backend="bigquery",
               adapter=adapter)

    (_, _, dry, _, _), (_, dataset, _), (_, _, job, _, _) = client.calls
    assert dry.use_legacy_sql is False and job.use_legacy_sql is False
    assert job.create_disposition == "CREATE_IF_NEEDED"
    assert dataset.labels == {"created-by": "kfkit"}
    _, _, _, streams = reader.calls[0]
    assert streams == 4


@pytest.mark.parametrize("error, stage, message", [
    (gexc.NotFound("Not found: Dataset p:d"), "dry run", "BigQuery dry run failed, not found: Not found: Dataset p:d"),
    (gexc.Forbidden("Access Denied: p"), "dry run", "BigQuery denied access: Access Denied: p"),
    (gexc.InternalServerError("backend error"), "dry run", "BigQuery dry run failed: 500 backend error"),
    (gexc.NotFound("Not found: Table p:d.t"), "query", "BigQuery query failed, not found: Not found: Table p:d.t"),
    (gexc.NotFound("Not found: Table p:d.t"), "query job", "BigQuery query job failed, not found: Not found: Table p:d.t"),
])
def test_each_bigquery_call_says_which_stage_failed(error, stage, message):
    from kfkit.adapters.bigquery import TableRef

    class FailsAt(FakeClient):
        def query(self, sql, job_config=None, location=None, job_id_prefix=None):
            raise error

    adapter = BigQueryAdapter("p", client=bound_to(bigquery.Client)(FailsAt)([]), read_client=FakeReadClient(pa.table({})))
    call = {"dry run": lambda: adapter.dry_run("SELECT 1"), "query": lambda: adapter.query_to_arrow("SELECT 1"),
            "query job": lambda: adapter.query_to_table("SELECT 1", TableRef("p", "d", "t"))}[stage]

    with pytest.raises(QueryError) as refused:
        call()

    assert str(refused.value) == message


def test_small_queries_are_read_as_arrow_in_the_adapters_location_with_standard_sql():
    table = pa.table({"a": [1, 2]})

    class Small(FakeClient):
        def query(self, sql, job_config=None, location=None, job_id_prefix=None):
            self.calls.append(("query", sql, job_config, location, job_id_prefix))
            return FakeJob([], rows=SimpleNamespace(
                to_arrow=lambda bqstorage_client: self.calls.append(("to_arrow", bqstorage_client)) or table))

    client, reader = bound_to(bigquery.Client)(Small)([]), FakeReadClient(table)
    adapter = BigQueryAdapter("p", "asia-northeast1", client=client, read_client=reader)

    batches = adapter.query_to_arrow("SELECT a FROM t WHERE a > @n", {"n": 0})

    (_, sql, config, location, _), (_, storage) = client.calls
    assert location == "asia-northeast1" and config.use_legacy_sql is False
    assert config.query_parameters == [bigquery.ScalarQueryParameter("n", "INT64", 0)]
    assert storage is reader
    assert pa.Table.from_batches(batches).equals(table)


def test_the_backend_names_the_missing_project():
    with pytest.raises(QueryError, match=r"^project is required for the bigquery backend \(the project that runs the jobs\)$"):
        BigQueryAdapter("")


def test_every_bigquery_type_maps_to_the_arrow_type_the_storage_api_sends():
    from kfkit.adapters.bigquery import schema_to_arrow

    fields = [bigquery.SchemaField(name, kind) for name, kind in [
        ("s", "STRING"), ("b", "BYTES"), ("i", "INTEGER"), ("i64", "INT64"), ("f", "FLOAT"), ("f64", "FLOAT64"),
        ("t", "BOOLEAN"), ("t2", "BOOL"), ("n", "NUMERIC"), ("bn", "BIGNUMERIC"), ("d", "DATE"),
        ("dt", "DATETIME"), ("ts", "TIMESTAMP"), ("tm", "TIME"), ("j", "JSON"), ("g", "GEOGRAPHY")]]
    fields.append(bigquery.SchemaField("tags", "string", mode="REPEATED"))
    fields.append(bigquery.SchemaField("r", "RECORD", fields=[bigquery.SchemaField("x", "INT64"),
                                                              bigquery.SchemaField("y", "STRING", mode="repeated")]))
    fields.append(bigquery.SchemaField("st", "STRUCT", fields=[bigquery.SchemaField("z", "FLOAT64")]))

    schema = schema_to_arrow(fields)

    assert schema == pa.schema([
        ("s", pa.string()), ("b", pa.binary()), ("i", pa.int64()), ("i64", pa.int64()), ("f", pa.float64()),
        ("f64", pa.float64()), ("t", pa.bool_()), ("t2", pa.bool_()), ("n", pa.decimal128(38, 9)),
        ("bn", pa.decimal256(76, 38)), ("d", pa.date32()), ("dt", pa.timestamp("us")),
        ("ts", pa.timestamp("us", tz="UTC")), ("tm", pa.time64("us")), ("j", pa.string()), ("g", pa.string()),
        ("tags", pa.list_(pa.string())), ("r", pa.struct([("x", pa.int64()), ("y", pa.list_(pa.string()))])),
        ("st", pa.struct([("z", pa.float64())]))])


def test_a_bigquery_type_kfkit_cannot_read_is_named():
    from kfkit.adapters.bigquery import schema_to_arrow

    with pytest.raises(QueryError, match=r"^column 'span' has the BigQuery type RANGE, which kfkit cannot read$"):
        schema_to_arrow([bigquery.SchemaField("span", "RANGE")])


def test_query_parameters_of_every_type_and_the_refusals():
    import datetime as dt
    import decimal

    params = query_parameters({"when": dt.datetime(2026, 1, 2, 3, tzinfo=dt.timezone.utc),
                               "local": dt.datetime(2026, 1, 2, 3), "price": decimal.Decimal("1.5"),
                               "names": ("a", "b"), "flags": [True]})

    assert params == [bigquery.ScalarQueryParameter("when", "TIMESTAMP", dt.datetime(2026, 1, 2, 3, tzinfo=dt.timezone.utc)),
                      bigquery.ScalarQueryParameter("local", "DATETIME", dt.datetime(2026, 1, 2, 3)),
                      bigquery.ScalarQueryParameter("price", "NUMERIC", decimal.Decimal("1.5")),
                      bigquery.ArrayQueryParameter("names", "STRING", ["a", "b"]),
                      bigquery.ArrayQueryParameter("flags", "BOOL", [True])]
    assert query_parameters(None) == []
    with pytest.raises(QueryError, match=r"^query parameter @ids is an empty list: BigQuery needs its element type$"):
        query_parameters({"ids": []})
    with pytest.raises(QueryError, match=r"^query parameter @m has unsupported type dict; use a string, number"):
        query_parameters({"m": {"a": 1}})
