"""BigQuery adapter: query jobs into destination tables, read back with the Storage Read API.

Every call to google-cloud-bigquery and google-cloud-bigquery-storage in kfkit goes through here.
Tests pass fake clients and check exactly what would be sent.
"""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import os
from dataclasses import dataclass
from typing import Any, Iterator

import pyarrow as pa

from kfkit.cloud_jobs import bigquery_job_uri
from kfkit.errors import QueryError

log = logging.getLogger("kfkit.bigquery")

STAGING_TABLE_EXPIRATION_MS = 7 * 24 * 3600 * 1000
# Where the BigQuery REST API and the Storage Read API are reached instead of Google's endpoints: a
# regional or Private Service Connect endpoint, or an emulator. An http:// address is an emulator on
# a trusted network: it gets anonymous credentials (no token is ever sent in clear) and, for the
# Storage Read API's gRPC, a plaintext channel.
# a query job that ended with one of these reasons is started again, as google-cloud-bigquery's own
# job retry would (its DEFAULT_JOB_RETRY reasons: https://cloud.google.com/bigquery/docs/error-messages)
TRANSIENT_JOB_REASONS = ("backendError", "internalError", "rateLimitExceeded", "jobBackendError",
                         "jobInternalError", "jobRateLimitExceeded")
JOB_ATTEMPTS = 3
API_ENDPOINT_ENV = "KFKIT_BIGQUERY_API_ENDPOINT"
STORAGE_API_ENDPOINT_ENV = "KFKIT_BIGQUERY_STORAGE_API_ENDPOINT"


@dataclass(frozen=True)
class TableRef:
    project: str
    dataset: str
    table: str

    @property
    def full_id(self) -> str:
        return f"{self.project}.{self.dataset}.{self.table}"

    @property
    def storage_path(self) -> str:
        return f"projects/{self.project}/datasets/{self.dataset}/tables/{self.table}"

    @property
    def api_uri(self) -> str:
        return ("https://www.googleapis.com/bigquery/v2/projects/"
                f"{self.project}/datasets/{self.dataset}/tables/{self.table}")


def query_parameters(params: dict[str, Any] | None) -> list:
    """`@name` parameters as BigQuery ScalarQueryParameter / ArrayQueryParameter objects."""
    from google.cloud import bigquery

    def type_of(value: Any, name: str) -> str:
        if isinstance(value, bool):
            return "BOOL"
        if isinstance(value, int):
            return "INT64"
        if isinstance(value, float):
            return "FLOAT64"
        if isinstance(value, decimal.Decimal):
            return "NUMERIC"
        if isinstance(value, str):
            return "STRING"
        if isinstance(value, dt.datetime):
            return "TIMESTAMP" if value.tzinfo else "DATETIME"
        if isinstance(value, dt.date):
            return "DATE"
        raise QueryError(f"query parameter @{name} has unsupported type {type(value).__name__}; "
                         "use a string, number, boolean, date, datetime or a list of one of them")

    out = []
    for name, value in (params or {}).items():
        if isinstance(value, (list, tuple)):
            if not value:
                raise QueryError(f"query parameter @{name} is an empty list: BigQuery needs its element type")
            out.append(bigquery.ArrayQueryParameter(name, type_of(value[0], name), list(value)))
        else:
            out.append(bigquery.ScalarQueryParameter(name, type_of(value, name), value))
    return out


class BigQueryAdapter:
    """Runs kfkit's BigQuery work for one project and location.

    Jobs are started asynchronously and polled (kfkit.cloud_jobs): each is in the step's
    gcp_resources as soon as it exists and is cancelled if the pipeline run is. Every job carries
    maximum_bytes_billed, so BigQuery itself refuses one that would bill more.
    """

    def __init__(self, project: str, location: str = "US", client=None, read_client=None, jobs=None,
                 maximum_bytes_billed: int | None = None):
        if not project:
            raise QueryError("project is required for the bigquery backend (the project that runs the jobs)")
        if maximum_bytes_billed is not None and maximum_bytes_billed <= 0:
            raise QueryError(f"maximum_bytes_billed must be a positive number of bytes, got {maximum_bytes_billed}")
        from kfkit.cloud_jobs import CloudJobs
        self.project = project
        self.location = location
        self._client = client
        self._read_client = read_client
        self.jobs = jobs or CloudJobs()
        self.maximum_bytes_billed = maximum_bytes_billed

    @property
    def client(self):
        if self._client is None:
            from google.cloud import bigquery
            endpoint = os.environ.get(API_ENDPOINT_ENV, "").strip().rstrip("/")
            options = {}
            if endpoint:
                options["client_options"] = {"api_endpoint": endpoint}
                if endpoint.startswith("http://"):
                    from google.auth.credentials import AnonymousCredentials
                    options["credentials"] = AnonymousCredentials()
            self._client = bigquery.Client(project=self.project, location=self.location, **options)
        return self._client

    @property
    def read_client(self):
        if self._read_client is None:
            from google.cloud import bigquery_storage
            endpoint = os.environ.get(STORAGE_API_ENDPOINT_ENV, "").strip().rstrip("/")
            if endpoint.startswith("http://"):
                import grpc
                from google.cloud.bigquery_storage_v1.services.big_query_read.transports import BigQueryReadGrpcTransport
                channel = grpc.insecure_channel(endpoint[len("http://"):])
                self._read_client = bigquery_storage.BigQueryReadClient(transport=BigQueryReadGrpcTransport(channel=channel))
            elif endpoint:
                self._read_client = bigquery_storage.BigQueryReadClient(
                    client_options={"api_endpoint": endpoint.removeprefix("https://")})
            else:
                self._read_client = bigquery_storage.BigQueryReadClient()
        return self._read_client

    def _wrap(self, exc: Exception, sql_kind: str) -> QueryError:
        from google.api_core import exceptions as gexc
        reasons = {e.get("reason") for e in getattr(exc, "errors", None) or [] if isinstance(e, dict)}
        # a job that ends over maximumBytesBilled fails with the reason bytesBilledLimitExceeded, which
        # google-cloud-bigquery does not map to 400 (its table of job error reasons lacks it): a 500
        if "bytesBilledLimitExceeded" in reasons or "bytesBilledLimitExceeded" in str(exc) \
                or "bytes billed" in str(getattr(exc, "message", "")).lower():
            return QueryError(f"BigQuery refused the {sql_kind}: it would bill more than "
                              f"maximum_bytes_billed={self.maximum_bytes_billed or 0:,} bytes ({exc.message})")
        if isinstance(exc, gexc.NotFound):
            return QueryError(f"BigQuery {sql_kind} failed, not found: {exc.message}")
        if isinstance(exc, gexc.BadRequest):
            return QueryError(f"BigQuery rejected the query: {exc.message}")
        if isinstance(exc, gexc.Forbidden):
            return QueryError(f"BigQuery denied access: {exc.message}")
        return QueryError(f"BigQuery {sql_kind} failed: {exc}")

    def estimate(self, sql: str, params: dict[str, Any] | None = None) -> tuple[pa.Schema, int]:
        """Dry run (free): validate the query and return its result schema and the bytes it would process."""
        from google.api_core import exceptions as gexc
        from google.cloud import bigquery
        config = bigquery.QueryJobConfig(dry_run=True, use_query_cache=False, use_legacy_sql=False,
                                         query_parameters=query_parameters(params))
        try:
            job = self.client.query(sql, job_config=config, location=self.location)
        except gexc.GoogleAPICallError as exc:
            raise self._wrap(exc, "dry run") from exc
        return schema_to_arrow(job.schema or []), int(job.total_bytes_processed or 0)

    def dry_run(self, sql: str, params: dict[str, Any] | None = None) -> pa.Schema:
        """Validate the query (syntax, tables, parameters) and return its result schema; free."""
        return self.estimate(sql, params)[0]

    def check_cost(self, sql: str, params: dict[str, Any] | None = None) -> tuple[pa.Schema, int]:
        """The dry run's schema and bytes, or QueryError naming the estimate when it exceeds the cap."""
        schema, processed = self.estimate(sql, params)
        log.info("BigQuery dry run: the query would process %s", human_bytes(processed))
        if self.maximum_bytes_billed is not None and processed > self.maximum_bytes_billed:
            raise QueryError(
                f"the query would process {human_bytes(processed)} ({processed:,} bytes, BigQuery's dry-run "
                f"estimate), more than maximum_bytes_billed={self.maximum_bytes_billed:,} "
                f"({human_bytes(self.maximum_bytes_billed)}); nothing was run: narrow the query (fewer "
                "columns, a partition filter) or raise maximum_bytes_billed")
        return schema, processed

    def ensure_dataset(self, dataset: str) -> None:
        from google.cloud import bigquery
        ds = bigquery.Dataset(f"{self.project}.{dataset}")
        ds.location = self.location
        ds.default_table_expiration_ms = STAGING_TABLE_EXPIRATION_MS
        ds.labels = {"created-by": "kfkit"}
        found = self.client.create_dataset(ds, exists_ok=True)
        # a query job writes only to a dataset in its own location; BigQuery's refusal would come later
        # as "Not found: Dataset ... was not found in location", though the dataset is there
        there = getattr(found, "location", None)
        if isinstance(there, str) and there.lower() != self.location.lower():
            raise QueryError(f"the staging dataset {self.project}.{dataset} is in {there}, but kfkit's BigQuery jobs "
                             f"run in {self.location}: BigQuery writes a query's result only to a dataset in the job's "
                             "location; name another staging dataset, or run in its location")

    def run_query(self, sql: str, *, destination: "TableRef | None" = None, params: dict[str, Any] | None = None,
                  labels: dict[str, str] | None = None, job_id_prefix: str = "kfkit_", what: str = "query job"):
        """Start a query job, record it in gcp_resources, poll it to the end and return the finished job."""
        return self._run(sql, destination=destination, params=params, labels=labels, job_id_prefix=job_id_prefix,
                         what=what)[0]

    def _run(self, sql: str, *, destination: "TableRef | None", params: dict[str, Any] | None,
             labels: dict[str, str] | None, job_id_prefix: str, what: str):
        """run_query's work: (the finished job, its result rows)."""
        from google.api_core import exceptions as gexc
        from google.cloud import bigquery
        config = bigquery.QueryJobConfig(use_legacy_sql=False, labels=dict(labels or {}),
                                         query_parameters=query_parameters(params))
        if self.maximum_bytes_billed is not None:
            config.maximum_bytes_billed = self.maximum_bytes_billed
        if destination is not None:
            config.destination = destination.full_id
            config.write_disposition = bigquery.WriteDisposition.WRITE_TRUNCATE
            config.create_disposition = bigquery.CreateDisposition.CREATE_IF_NEEDED
        for attempt in range(1, JOB_ATTEMPTS + 1):
            job = None
            try:
                job = self.client.query(sql, job_config=config, job_id_prefix=job_id_prefix, location=self.location)
                uri = job.self_link or bigquery_job_uri(self.project, job.job_id, self.location)
                self.jobs.run("BigQueryJob", uri, job.done, job.cancel, f"BigQuery {what} {job.job_id}")
                # raises the job's own error, if it ended with one. job_retry=None: left to itself the
                # client would start a failed job again under a new id inside result(), a job that
                # gcp_resources never names and a cancelled run never cancels; kfkit starts it here
                rows = job.result(job_retry=None)
            except gexc.GoogleAPICallError as exc:
                reason = (getattr(job, "error_result", None) or {}).get("reason")
                if attempt < JOB_ATTEMPTS and reason in TRANSIENT_JOB_REASONS:
                    log.warning("BigQuery %s %s failed with %s (%s); starting it again, attempt %d of %d", what,
                                job.job_id, reason, getattr(exc, "message", exc), attempt + 1, JOB_ATTEMPTS)
                    self.jobs.pause(2.0 ** attempt)
                    continue
                raise self._wrap(exc, what) from exc
            return job, rows

    def query_to_table(self, sql: str, destination: TableRef, params: dict[str, Any] | None = None,
                       labels: dict[str, str] | None = None, job_id_prefix: str = "kfkit_ingest_"):
        """Run the query into `destination` (replaced), wait, and return the finished job."""
        return self.run_query(sql, destination=destination, params=params, labels=labels,
                              job_id_prefix=job_id_prefix)

    def table_size(self, table: TableRef) -> tuple[int, int]:
        """(rows, bytes) of a table, from its metadata."""
        found = self.client.get_table(table.full_id)
        return int(found.num_rows or 0), int(found.num_bytes or 0)

    def read_table(self, table: TableRef, max_streams: int = 4) -> Iterator[pa.RecordBatch]:
        """Stream a table as Arrow record batches with the Storage Read API (never list_rows)."""
        from google.cloud.bigquery_storage import types
        session = self.read_client.create_read_session(
            parent=f"projects/{self.project}",
            read_session=types.ReadSession(table=table.storage_path,
                                           data_format=types.DataFormat.ARROW),
            max_stream_count=max_streams,
        )
        # each ReadRowsResponse is one Arrow IPC record batch of the session's schema; read here, not
        # with the reader's page.to_arrow(), which google-cloud-bigquery-storage has deprecated
        schema = pa.ipc.read_schema(pa.py_buffer(session.arrow_schema.serialized_schema))
        for stream in session.streams:
            for response in self.read_client.read_rows(stream.name):
                batch = pa.ipc.read_record_batch(pa.py_buffer(response.arrow_record_batch.serialized_record_batch),
                                                 schema)
                if batch.num_rows:
                    yield batch

    def query_to_arrow(self, sql: str, params: dict[str, Any] | None = None, labels: dict[str, str] | None = None,
                       what: str = "query") -> list[pa.RecordBatch]:
        """Run a (small) query and read its result through the Storage Read API as Arrow."""
        from google.api_core import exceptions as gexc
        _, rows = self._run(sql, destination=None, params=params, labels=labels, job_id_prefix="kfkit_", what=what)
        try:
            return rows.to_arrow(bqstorage_client=self.read_client).to_batches()
        except gexc.GoogleAPICallError as exc:
            raise self._wrap(exc, what) from exc


def human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{count} bytes"


_BQ_TO_ARROW = {
    "STRING": pa.string(), "BYTES": pa.binary(), "INTEGER": pa.int64(), "INT64": pa.int64(),
    "FLOAT": pa.float64(), "FLOAT64": pa.float64(), "BOOLEAN": pa.bool_(), "BOOL": pa.bool_(),
    "NUMERIC": pa.decimal128(38, 9), "BIGNUMERIC": pa.decimal256(76, 38), "DATE": pa.date32(),
    "DATETIME": pa.timestamp("us"), "TIMESTAMP": pa.timestamp("us", tz="UTC"), "TIME": pa.time64("us"),
    "JSON": pa.string(), "GEOGRAPHY": pa.string(),
}


def field_to_arrow(field) -> pa.DataType:
    """One BigQuery SchemaField as the Arrow type the Storage Read API delivers (REPEATED: list, RECORD: struct)."""
    kind = field.field_type.upper()
    if kind in ("RECORD", "STRUCT"):
        arrow = pa.struct([pa.field(f.name, field_to_arrow(f)) for f in field.fields])
    elif kind in _BQ_TO_ARROW:
        arrow = _BQ_TO_ARROW[kind]
    else:
        raise QueryError(f"column {field.name!r} has the BigQuery type {kind}, which kfkit cannot read")
    return pa.list_(arrow) if (field.mode or "").upper() == "REPEATED" else arrow


def schema_to_arrow(fields) -> pa.Schema:
    """BigQuery SchemaField list -> Arrow schema, as the Storage Read API delivers the rows."""
    return pa.schema([pa.field(f.name, field_to_arrow(f)) for f in fields])
