"""kfkit's BigQuery paths through the real google-cloud-bigquery and google-cloud-bigquery-storage
clients over their real transports (HTTP/JSON and gRPC), against the protocol fakes in
tests/bigquery_api.py and tests/bigquery_storage_api.py, reached the way a user reaches an emulator:
KFKIT_BIGQUERY_API_ENDPOINT and KFKIT_BIGQUERY_STORAGE_API_ENDPOINT. What is asserted is what went
over the wire (the job resources kfkit sent, decoded strictly) and what came back into kfkit."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kfkit.adapters.bigquery import BigQueryAdapter, TableRef
from kfkit.cloud_jobs import CloudJobs
from kfkit.components.ingest.ingest import DEFAULT_MAXIMUM_BYTES_BILLED, run_ingest
from kfkit.errors import QueryError
from kfkit.warehouse.local import WAREHOUSE_FILE, LocalWarehouse
from tests.bigquery_api import BigQueryApi
from tests.bigquery_storage_api import BigQueryStorageApi
from tests.conftest import DEFAULT_SPLIT, PENGUINS, split_outputs

pytestmark = pytest.mark.wire


@pytest.fixture(scope="module")
def sample_warehouse(tmp_path_factory):
    """The sample tables alone (the session's shared root also gets what other tests write)."""
    root = tmp_path_factory.mktemp("bigquery-samples")
    LocalWarehouse(root).ensure_sample_data()
    return root / WAREHOUSE_FILE


@pytest.fixture
def bq(sample_warehouse, tmp_path, monkeypatch):
    """The two fakes over a copy of the sample warehouse, every sample dataset in the US."""
    root = tmp_path / "warehouse"
    root.mkdir()
    shutil.copy(sample_warehouse, root / WAREHOUSE_FILE)
    warehouse = LocalWarehouse(root)
    with BigQueryApi(warehouse, tmp_path / "gcs") as api, BigQueryStorageApi(api) as storage:
        for name in warehouse.tables():
            project, dataset = name.rsplit(".", 1)[0].split(".", 1)
            api.add_dataset(project, dataset, "US")
        monkeypatch.setenv("KFKIT_BIGQUERY_API_ENDPOINT", api.url)
        monkeypatch.setenv("KFKIT_BIGQUERY_STORAGE_API_ENDPOINT", storage.url)
        api.storage = storage
        yield api


def rows_of(directory) -> list[dict]:
    table = pq.read_table(directory)
    return sorted(table.to_pylist(), key=lambda r: json.dumps(r, sort_keys=True, default=str))


def no_sleep_jobs() -> CloudJobs:
    return CloudJobs(sleep=lambda seconds: None)


def test_ingest_streams_the_query_through_a_staging_table_and_the_storage_read_api(bq, tmp_path, penguin_splits):
    outputs = split_outputs(tmp_path / "out")

    result = run_ingest(PENGUINS, outputs, split=DEFAULT_SPLIT, label_column="species", backend="bigquery",
                        project="my-proj", location="US")

    assert {name: rows_of(path) for name, path in outputs.items()} == \
        {name: rows_of(path) for name, path in penguin_splits.items()}
    dry_run, job = bq.inserted_jobs()
    assert dry_run["configuration"] == {"dryRun": True, "query": {
        "query": PENGUINS, "useLegacySql": False, "useQueryCache": False, "queryParameters": []}}
    query = job["configuration"]["query"]
    assert job["jobReference"]["jobId"].startswith("kfkit_ingest_") and job["jobReference"]["location"] == "US"
    assert job["configuration"]["labels"] == {"kfkit-component": "ingest"}
    assert query["destinationTable"] == {"projectId": "my-proj", "datasetId": "kfkit_staging",
                                         "tableId": result.extra["table"]}
    assert (query["writeDisposition"], query["createDisposition"]) == ("WRITE_TRUNCATE", "CREATE_IF_NEEDED")
    assert query["maximumBytesBilled"] == str(DEFAULT_MAXIMUM_BYTES_BILLED) and query["useLegacySql"] is False
    staging = bq.datasets[("my-proj", "kfkit_staging")]
    assert staging["location"] == "US" and staging["defaultTableExpirationMs"] == str(7 * 24 * 3600 * 1000)
    assert [s.read_session.table for s in bq.storage.sessions] == [
        f"projects/my-proj/datasets/kfkit_staging/tables/{result.extra['table']}"]
    assert result.job_id == job["jobReference"]["jobId"]


def test_query_results_come_back_through_the_storage_read_api_over_every_stream(bq):
    # jobs.insert then getQueryResults(maxResults=0) leaves the client no first page, so with a
    # Storage Read client it reads the job's (anonymous) result table over gRPC, whatever its size
    bq.storage.batch_rows = 50
    adapter = BigQueryAdapter("my-proj", "US", jobs=no_sleep_jobs())

    table = pa.Table.from_batches(adapter.query_to_arrow("SELECT * FROM `bigquery-public-data.ml_datasets.penguins`"))

    expected = bq._db.query("SELECT * FROM `bigquery-public-data.ml_datasets.penguins`")
    assert table.schema == expected.schema
    assert sorted(map(str, table.to_pylist())) == sorted(map(str, expected.to_pylist())) and table.num_rows == 344
    destination = bq.inserted_jobs()[0]["configuration"]["query"].get("destinationTable")
    assert destination is None  # kfkit names no destination: BigQuery's anonymous table holds the result
    (session,) = bq.storage.sessions
    assert session.read_session.table.startswith("projects/my-proj/datasets/_") and len(bq.storage.reads) == 2


def test_adapter_polls_a_running_job_with_jobs_get_until_it_is_done(bq):
    bq.polls_until_done = 3
    adapter = BigQueryAdapter("my-proj", "US", jobs=no_sleep_jobs())

    job = adapter.run_query("SELECT 1 AS one", job_id_prefix="kfkit_poll_")

    gets = [path for method, path, _ in bq.requests if method == "GET" and f"/jobs/{job.job_id}" in path]
    assert len(gets) == 3 and all("location=US" in path for path in gets)


def test_a_job_over_maximum_bytes_billed_fails_in_bigquery_with_a_message_naming_the_cap(bq):
    bq.bytes_processed = 5_000_000
    adapter = BigQueryAdapter("my-proj", "US", jobs=no_sleep_jobs(), maximum_bytes_billed=1_000_000)

    with pytest.raises(QueryError, match="would bill more than maximum_bytes_billed=1,000,000 bytes"):
        adapter.run_query("SELECT 1 AS one")

    assert bq.inserted_jobs()[0]["configuration"]["query"]["maximumBytesBilled"] == "1000000"


def test_ingest_stops_after_the_dry_run_when_its_estimate_exceeds_the_cap(bq, tmp_path):
    bq.bytes_processed = 2_000_000_000

    with pytest.raises(QueryError, match="would process 2.0 GB"):
        run_ingest(PENGUINS, split_outputs(tmp_path / "out"), split=DEFAULT_SPLIT, label_column="species",
                   backend="bigquery", project="my-proj", location="US", maximum_bytes_billed=1_000_000_000)

    assert [j["configuration"].get("dryRun") for j in bq.inserted_jobs()] == [True]


def test_query_parameters_go_over_the_wire_typed_and_named(bq):
    adapter = BigQueryAdapter("my-proj", "US", jobs=no_sleep_jobs())

    rows = pa.Table.from_batches(adapter.query_to_arrow(
        "SELECT COUNT(*) AS n FROM `bigquery-public-data.ml_datasets.penguins` "
        "WHERE body_mass_g > @mass AND island IN UNNEST(@islands)",
        {"mass": 4000.0, "islands": ["Biscoe", "Dream"]})).to_pylist()

    expected = next(iter(bq.warehouse.query_batches(
        "SELECT COUNT(*) AS n FROM `bigquery-public-data.ml_datasets.penguins` "
        "WHERE body_mass_g > 4000 AND island IN ('Biscoe', 'Dream')"))).to_pylist()
    assert rows == expected
    assert bq.inserted_jobs()[0]["configuration"]["query"]["queryParameters"] == [
        {"name": "mass", "parameterType": {"type": "FLOAT64"}, "parameterValue": {"value": 4000.0}},
        {"name": "islands", "parameterType": {"type": "ARRAY", "arrayType": {"type": "STRING"}},
         "parameterValue": {"arrayValues": [{"value": "Biscoe"}, {"value": "Dream"}]}}]


def test_a_missing_table_is_a_query_error_naming_it(bq):
    bq.add_dataset("my-proj", "sales", "US")
    adapter = BigQueryAdapter("my-proj", "US", jobs=no_sleep_jobs())

    with pytest.raises(QueryError, match="not found.*my-proj:sales.orders"):
        adapter.dry_run("SELECT * FROM `my-proj.sales.orders`")


def test_a_job_in_another_location_than_its_tables_is_refused_as_bigquery_does(bq):
    adapter = BigQueryAdapter("my-proj", "EU", jobs=no_sleep_jobs())

    with pytest.raises(QueryError, match="not found in location EU"):
        adapter.dry_run(PENGUINS)


def test_table_size_reads_the_tables_metadata(bq):
    adapter = BigQueryAdapter("my-proj", "US", jobs=no_sleep_jobs())

    rows, size = adapter.table_size(TableRef("bigquery-public-data", "ml_datasets", "penguins"))

    assert rows == 344 and size > 0


def test_monitor_reads_a_batch_prediction_input_table_whole(bq):
    from kfkit.components.monitor.monitor import read_table

    table = read_table("bigquery-public-data.ml_datasets.penguins", backend="bigquery", project="my-proj",
                       location="US", jobs=no_sleep_jobs())

    assert table.num_rows == 344 and table.column_names[:2] == ["species", "island"]


def _log_table(bq, deployed_rows) -> str:
    name = "my-proj.logs.penguins"
    bq.add_dataset("my-proj", "logs", "US")
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    bq.write_table(name, pa.table({
        "endpoint": ["projects/p/locations/us-central1/endpoints/1"] * len(deployed_rows),
        "deployed_model_id": [d for d, _, _ in deployed_rows],
        "logging_time": pa.array([start + dt.timedelta(minutes=i) for i in range(len(deployed_rows))],
                                 pa.timestamp("us", tz="UTC")),
        "request_id": pa.array([str(i) for i in range(len(deployed_rows))]).cast(pa.decimal128(38, 9)),
        "request_payload": [[json.dumps({"instances": i})] for _, i, _ in deployed_rows],
        "response_payload": [[json.dumps({"predictions": p})] for _, _, p in deployed_rows]}))
    return name


def test_monitor_reads_vertex_request_logs_in_a_window(bq):
    from kfkit.components.monitor.monitor import PREDICTION, request_log_reader

    table = _log_table(bq, [("1", [{"x": float(i)}], [{"classes": "Adelie", "scores": [0.9, 0.05, 0.05]}])
                            for i in range(10)])
    read = request_log_reader("bigquery", endpoint_name="penguins", project="my-proj", location="US", table=table,
                              jobs=no_sleep_jobs())
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc).timestamp()

    rows, predictions = read(start + 120, start + 300)

    assert sorted(r["x"] for r in rows) == [2.0, 3.0, 4.0]
    assert predictions == [{PREDICTION: "Adelie"}] * 3
    parameters = bq.inserted_jobs()[0]["configuration"]["query"]["queryParameters"]
    assert [p["parameterType"]["type"] for p in parameters] == ["TIMESTAMP", "TIMESTAMP"]


def test_ingest_export_path_splits_in_bigquery_and_validate_computes_the_statistics_there(bq, penguin_splits,
                                                                                          penguin_validation):
    from kfkit.components.validate.validate import split_source, validate

    gcs = bq.gcs_root  # what Vertex AI's /gcs/ mount shows of the bucket EXPORT DATA writes to
    outputs = {name: gcs / "bucket" / "run" / f"{name}_data" for name in ("train", "eval", "test")}

    result = run_ingest(PENGUINS, outputs, split=DEFAULT_SPLIT, label_column="species", backend="bigquery",
                        project="my-proj", location="US", export_threshold_bytes=0, gcs_fuse_root=str(gcs),
                        labels={"Team": "ML Platform"})
    metadata = {name: {"bigquery_select": result.extra["selects"][name], "bigquery_project": "my-proj",
                       "bigquery_location": "US", "schema": result.schema} for name in outputs}
    jobs_before_validate = len(bq.inserted_jobs())
    on_bigquery = validate({name: split_source(str(outputs[name]), metadata[name], no_sleep_jobs())
                            for name in outputs}, "species")

    assert result.extra["path"] == "bigquery-export"
    assert {name: rows_of(path) for name, path in outputs.items()} == \
        {name: rows_of(path) for name, path in penguin_splits.items()}
    exports = [j for j in bq.inserted_jobs() if j["configuration"]["query"]["query"].startswith("EXPORT DATA")]
    assert [j["jobReference"]["jobId"].rsplit("_", 1)[0] for j in exports] == \
        ["kfkit_export_train", "kfkit_export_eval", "kfkit_export_test"]
    assert [j["configuration"]["labels"] for j in exports] == [
        {"kfkit-component": "ingest", "team": "ml-platform", "kfkit-stage": f"export-{name}"}
        for name in ("train", "eval", "test")]
    assert all("destinationTable" not in j["configuration"]["query"] for j in exports)
    statistics_jobs = bq.inserted_jobs()[jobs_before_validate:]
    assert statistics_jobs and all(j["configuration"]["labels"] == {"kfkit-component": "validate"}
                                   for j in statistics_jobs)
    on_parquet = penguin_validation
    assert on_bigquery.split_rows == on_parquet.split_rows
    assert on_bigquery.statistics["rows"] == on_parquet.statistics["rows"]
    assert [a.kind for a in on_bigquery.anomalies] == [a.kind for a in on_parquet.anomalies]


def test_ingest_job_labels_keep_to_bigquerys_label_rules(bq, tmp_path):
    # a key must start with a lowercase letter (https://cloud.google.com/bigquery/docs/labels-intro#requirements)
    run_ingest(PENGUINS, split_outputs(tmp_path / "out"), split=DEFAULT_SPLIT, label_column="species",
               backend="bigquery", project="my-proj", location="US",
               labels={"2026 budget": "Q3", "Cost Center": "ML/Platform", "_private": "x"})

    labels = bq.inserted_jobs()[1]["configuration"]["labels"]
    assert set(labels) == {"kfkit-component", "k2026-budget", "cost-center", "k_private"}
    assert labels["cost-center"] == "ml-platform" and labels["k2026-budget"] == "q3"


def test_the_vertex_canary_reads_request_logs_and_labels_through_bigquery(bq):
    from kfkit.components.canary.analysis import Served
    from kfkit.components.canary.vertex import VertexCanary

    table = _log_table(bq, [("111", [{"id": "a", "x": 1.0}], [{"classes": "Adelie", "scores": [0.9, 0.05, 0.05]}]),
                            ("222", [{"id": "b", "x": 2.0}], [{"classes": "Gentoo", "scores": [0.1, 0.1, 0.8]}])])
    bq.write_table("my-proj.logs.truth", pa.table({"id": ["a", "b"], "species": ["Adelie", "Adelie"]}))
    canary = VertexCanary("penguins", project="my-proj", location="us-central1",
                          request_logging_table=f"bq://{table}", bigquery_location="US",
                          vertex=object(), monitoring=object())
    canary.bigquery.jobs = no_sleep_jobs()

    labels = canary.labels("my-proj.logs.truth", "id", "species")
    sides = {"111": Served("canary 111"), "222": Served("baseline 222")}
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc).timestamp()
    canary._read_predictions(sides, start, start + 3600, labels, "id")

    assert labels == {"a": "Adelie", "b": "Adelie"}
    assert sides["111"].labelled == [("Adelie", "Adelie")] and sides["222"].labelled == [("Gentoo", "Adelie")]
    window = bq.inserted_jobs()[1]["configuration"]["query"]["queryParameters"]
    assert [p["parameterValue"]["value"] for p in window] == ["2026-01-01 00:00:00+00:00", "2026-01-01 01:00:00+00:00"]


def test_ingest_names_a_staging_dataset_in_another_location_before_running_the_query(bq, tmp_path):
    bq.add_dataset("my-proj", "kfkit_staging", "EU")  # made earlier by a run in the EU

    with pytest.raises(QueryError, match="kfkit_staging is in EU.*jobs run in US"):
        run_ingest(PENGUINS, split_outputs(tmp_path / "out"), split=DEFAULT_SPLIT, label_column="species",
                   backend="bigquery", project="my-proj", location="US")

    assert [j["configuration"].get("dryRun") for j in bq.inserted_jobs()] == [True]


def test_the_fake_refuses_job_requests_bigquery_refuses(bq):
    # the fake's own rules, so a test that passes against it could pass against BigQuery
    from google.api_core import exceptions as gexc
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    client = bigquery.Client("my-proj", credentials=AnonymousCredentials(), client_options={"api_endpoint": bq.url})
    refused = {
        "unknown field": ({"query": {"query": "SELECT 1", "useLegacySql": False, "maximumBytesBiled": "1"}}, "maximumBytesBiled"),
        "legacy SQL by default": ({"query": {"query": "SELECT 1"}}, "useLegacySql"),
        "label key": ({"labels": {"Team": "x"}, "query": {"query": "SELECT 1", "useLegacySql": False}}, "label key"),
        "label value": ({"labels": {"team": "ML"}, "query": {"query": "SELECT 1", "useLegacySql": False}}, "label value"),
    }
    for what, (configuration, message) in refused.items():
        job = {"jobReference": {"projectId": "my-proj", "jobId": f"refused_{len(bq.requests)}", "location": "US"},
               "configuration": configuration}
        with pytest.raises(gexc.BadRequest, match=message):
            client._connection.api_request("POST", "/projects/my-proj/jobs", data=job)
    with pytest.raises(gexc.BadRequest, match="Invalid job ID"):
        client.query("SELECT 1", job_id="kfkit.ingest.1", job_config=bigquery.QueryJobConfig(use_legacy_sql=False),
                     job_retry=None)
    config = bigquery.QueryJobConfig(use_legacy_sql=False, destination="my-proj.kfkit_staging.t")
    bq.add_dataset("my-proj", "kfkit_staging", "US")
    client.query("SELECT 1 AS x", job_config=config).result()
    with pytest.raises(gexc.Conflict, match="Already Exists: Table"):  # WRITE_EMPTY, the default
        client.query("SELECT 2 AS x", job_config=config).result()


def test_a_cancelled_pipeline_cancels_its_running_job_in_bigquery_and_records_it_in_gcp_resources(bq, tmp_path):
    bq.polls_until_done = 100
    resources = tmp_path / "gcp_resources"
    jobs = CloudJobs(str(resources), sleep=lambda seconds: jobs.cancel_running())  # SIGTERM while it waits
    adapter = BigQueryAdapter("my-proj", "US", jobs=jobs)

    with pytest.raises(QueryError, match="cancelled"):
        adapter.run_query("SELECT 1 AS one", job_id_prefix="kfkit_ingest_")

    (job,) = bq.inserted_jobs()
    assert bq.cancelled == [job["jobReference"]["jobId"]]
    assert any(m == "POST" and p.startswith(f"/bigquery/v2/projects/my-proj/jobs/{bq.cancelled[0]}/cancel?")
               and "location=US" in p for m, p, _ in bq.requests)
    (resource,) = json.loads(resources.read_text())["resources"]
    assert resource == {"resourceType": "BigQueryJob", "resourceUri":
                        f"{bq.url}/bigquery/v2/projects/my-proj/jobs/{bq.cancelled[0]}?location=US"}


def test_ingest_of_a_query_with_no_rows_says_so(bq, tmp_path):
    from kfkit.errors import IngestError

    with pytest.raises(IngestError, match="no rows"):
        run_ingest(PENGUINS + " AND body_mass_g < 0", split_outputs(tmp_path / "out"), split=DEFAULT_SPLIT,
                   label_column="species", backend="bigquery", project="my-proj", location="US")


def test_a_job_that_failed_transiently_is_started_again_and_both_are_in_gcp_resources(bq, tmp_path):
    # https://cloud.google.com/bigquery/docs/error-messages: backendError, "retry with exponential backoff"
    bq.failures = [{"reason": "backendError", "message": "Backend error. Job aborted."}]
    resources = tmp_path / "gcp_resources"
    pauses = []
    adapter = BigQueryAdapter("my-proj", "US", jobs=CloudJobs(str(resources), sleep=pauses.append))

    rows = pa.Table.from_batches(adapter.query_to_arrow("SELECT 7 AS seven")).to_pylist()

    first, second = (j["jobReference"]["jobId"] for j in bq.inserted_jobs())
    assert [r["resourceUri"].split("/jobs/")[1] for r in json.loads(resources.read_text())["resources"]] == \
        [f"{first}?location=US", f"{second}?location=US"]
    assert rows == [{"seven": 7}] and pauses == [2.0]


def test_a_job_that_failed_for_good_is_not_started_again(bq):
    bq.failures = [{"reason": "invalidQuery", "message": "Syntax error: Unexpected end of script"}]
    adapter = BigQueryAdapter("my-proj", "US", jobs=no_sleep_jobs())

    with pytest.raises(QueryError, match="rejected the query: .*Syntax error"):
        adapter.run_query("SELECT 1 AS one")

    assert len(bq.inserted_jobs()) == 1


def test_an_https_endpoint_keeps_the_application_default_credentials(monkeypatch):
    # a regional or Private Service Connect endpoint is Google's: only an http:// emulator goes anonymous
    import google.auth
    from google.auth.credentials import AnonymousCredentials

    class Adc(AnonymousCredentials):
        pass

    monkeypatch.setattr(google.auth, "default", lambda *args, **kwargs: (Adc(), "my-proj"))
    monkeypatch.setenv("KFKIT_BIGQUERY_API_ENDPOINT", "https://bigquery-psc.p.googleapis.com/")
    monkeypatch.setenv("KFKIT_BIGQUERY_STORAGE_API_ENDPOINT", "https://bigquerystorage-psc.p.googleapis.com")
    adapter = BigQueryAdapter("my-proj", "US")

    assert adapter.client._connection.API_BASE_URL == "https://bigquery-psc.p.googleapis.com"
    assert type(adapter.client._credentials) is Adc
    assert adapter.read_client._transport._host == "bigquerystorage-psc.p.googleapis.com:443"


def test_the_fakes_rest_rows_and_read_api_rows_agree_for_every_type(bq):
    # the fake's f/v rows are what kfkit would get without the Storage Read API: both paths must
    # give the client the same values, or one of the fakes is wrong
    import decimal

    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    bq.add_dataset("my-proj", "types", "US")
    bq.write_table("my-proj.types.every", pa.table({
        "i": pa.array([1, None, -(2 ** 63)], pa.int64()),
        "f": [0.1, None, float("inf")],
        "b": [True, False, None],
        "s": ["Adélie", "", None],
        "by": pa.array([b"\x00\xff", None, b""], pa.binary()),
        "d": pa.array([dt.date(2026, 1, 1), None, dt.date(1, 1, 1)], pa.date32()),
        "ts": pa.array([dt.datetime(2026, 1, 1, 12, 30, 0, 123456, tzinfo=dt.timezone.utc), None, None],
                       pa.timestamp("us", tz="UTC")),
        "dtm": pa.array([dt.datetime(2026, 1, 1, 12, 30), None, None], pa.timestamp("us")),
        "n": pa.array([decimal.Decimal("1.5"), None, decimal.Decimal("-99999999999999999999999999999.999999999")],
                      pa.decimal128(38, 9)),
        "tags": [["a", "b"], [], ["c"]],  # no NULL array: BigQuery has none
        "rec": pa.array([{"x": 1.0, "y": "u"}, None, {"x": None, "y": "v"}],
                        pa.struct([("x", pa.float64()), ("y", pa.string())])),
    }))
    client = bigquery.Client("my-proj", credentials=AnonymousCredentials(), client_options={"api_endpoint": bq.url})
    adapter = BigQueryAdapter("my-proj", "US", jobs=no_sleep_jobs())
    sql = "SELECT * FROM `my-proj.types.every` ORDER BY i"

    over_rest = client.query(sql, job_config=bigquery.QueryJobConfig(use_legacy_sql=False)).result() \
        .to_arrow(create_bqstorage_client=False)
    over_grpc = pa.Table.from_batches(adapter.query_to_arrow(sql))

    assert over_rest.num_rows == over_grpc.num_rows == 3
    assert over_rest.to_pylist() == over_grpc.to_pylist()
