"""BigQuery adapter: query jobs into destination tables, read back with the Storage Read API.

Every call to google-cloud-bigquery and google-cloud-bigquery-storage in kfkit goes through here.
Tests pass fake clients and check exactly what would be sent.
"""

from __future__ import annotations

import datetime as dt
import decimal
from dataclasses import dataclass
from typing import Any, Iterator

import pyarrow as pa

from kfkit.errors import QueryError

STAGING_TABLE_EXPIRATION_MS = 7 * 24 * 3600 * 1000


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
    """Runs kfkit's BigQuery work for one project and location."""

    def __init__(self, project: str, location: str = "US", client=None, read_client=None):
        if not project:
            raise QueryError("project is required for the bigquery backend (the project that runs the jobs)")
        self.project = project
        self.location = location
        self._client = client
        self._read_client = read_client

    @property
    def client(self):
        if self._client is None:
            from google.cloud import bigquery
            self._client = bigquery.Client(project=self.project, location=self.location)
        return self._client

    @property
    def read_client(self):
        if self._read_client is None:
            from google.cloud import bigquery_storage
            self._read_client = bigquery_storage.BigQueryReadClient()
        return self._read_client

    def _wrap(self, exc: Exception, sql_kind: str) -> QueryError:
        from google.api_core import exceptions as gexc
        if isinstance(exc, gexc.NotFound):
            return QueryError(f"BigQuery {sql_kind} failed, not found: {exc.message}")
        if isinstance(exc, gexc.BadRequest):
            return QueryError(f"BigQuery rejected the query: {exc.message}")
        if isinstance(exc, gexc.Forbidden):
            return QueryError(f"BigQuery denied access: {exc.message}")
        return QueryError(f"BigQuery {sql_kind} failed: {exc}")

    def dry_run(self, sql: str, params: dict[str, Any] | None = None) -> pa.Schema:
        """Validate the query (syntax, tables, parameters) and return its result schema; free."""
        from google.api_core import exceptions as gexc
        from google.cloud import bigquery
        config = bigquery.QueryJobConfig(dry_run=True, use_query_cache=False, use_legacy_sql=False,
                                         query_parameters=query_parameters(params))
        try:
            job = self.client.query(sql, job_config=config, location=self.location)
        except gexc.GoogleAPICallError as exc:
            raise self._wrap(exc, "dry run") from exc
        return schema_to_arrow(job.schema or [])

    def ensure_dataset(self, dataset: str) -> None:
        from google.cloud import bigquery
        ds = bigquery.Dataset(f"{self.project}.{dataset}")
        ds.location = self.location
        ds.default_table_expiration_ms = STAGING_TABLE_EXPIRATION_MS
        ds.labels = {"created-by": "kfkit"}
        self.client.create_dataset(ds, exists_ok=True)

    def query_to_table(self, sql: str, destination: TableRef, params: dict[str, Any] | None = None,
                       labels: dict[str, str] | None = None, job_id_prefix: str = "kfkit_ingest_"):
        """Run the query into `destination` (replaced), wait, and return the finished job."""
        from google.api_core import exceptions as gexc
        from google.cloud import bigquery
        config = bigquery.QueryJobConfig(
            destination=destination.full_id,
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
            create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
            use_legacy_sql=False,
            labels=dict(labels or {}),
            query_parameters=query_parameters(params),
        )
        try:
            job = self.client.query(sql, job_config=config, job_id_prefix=job_id_prefix,
                                    location=self.location)
            job.result()
        except gexc.GoogleAPICallError as exc:
            raise self._wrap(exc, "query job") from exc
        return job

    def read_table(self, table: TableRef, max_streams: int = 4) -> Iterator[pa.RecordBatch]:
        """Stream a table as Arrow record batches with the Storage Read API (never list_rows)."""
        from google.cloud.bigquery_storage import types
        session = self.read_client.create_read_session(
            parent=f"projects/{self.project}",
            read_session=types.ReadSession(table=table.storage_path,
                                           data_format=types.DataFormat.ARROW),
            max_stream_count=max_streams,
        )
        for stream in session.streams:
            reader = self.read_client.read_rows(stream.name)
            for page in reader.rows(session).pages:
                batch = page.to_arrow()
                if batch.num_rows:
                    yield batch

    def query_to_arrow(self, sql: str, params: dict[str, Any] | None = None) -> list[pa.RecordBatch]:
        """Run a (small) query and read its result through the Storage Read API as Arrow."""
        from google.api_core import exceptions as gexc
        from google.cloud import bigquery
        config = bigquery.QueryJobConfig(use_legacy_sql=False, query_parameters=query_parameters(params))
        try:
            job = self.client.query(sql, job_config=config, location=self.location)
            table = job.result().to_arrow(bqstorage_client=self.read_client)
        except gexc.GoogleAPICallError as exc:
            raise self._wrap(exc, "query") from exc
        return table.to_batches()


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
