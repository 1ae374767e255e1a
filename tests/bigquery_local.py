"""A fake BigQuery client that runs every SQL text kfkit sends on the local warehouse.

Unlike a recording fake, it executes what the adapter generates (dry runs, query jobs into
destination tables, the split summary, EXPORT DATA), so a test proves the generated SQL computes
what the streaming path computes. Cloud Storage is a directory standing in for the /gcs/ mount of a
Vertex AI step: EXPORT DATA to gs://bucket/x/part-*.parquet writes <gcs_root>/bucket/x/part-
000000000000.parquet, numbered as BigQuery numbers its shards. Methods are bound to the real SDK's
signatures (tests.fakes.bound_to).
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
from google.cloud import bigquery
from google.cloud.bigquery_storage import BigQueryReadClient

from kfkit.warehouse.local import LocalWarehouse
from tests.bigquery_storage_api import arrow_schema, read_rows_responses
from tests.fakes import bound_to

_ARROW_TO_BQ = {pa.string(): "STRING", pa.int64(): "INT64", pa.float64(): "FLOAT64", pa.bool_(): "BOOL",
                pa.date32(): "DATE"}
EXPORT = re.compile(r"^EXPORT DATA OPTIONS \(uri = '(?P<uri>[^']+)', format = 'PARQUET', "
                    r"compression = 'SNAPPY', overwrite = true\) AS\n(?P<select>.*)$", re.S)


def bq_schema(schema: pa.Schema) -> list:
    return [bigquery.SchemaField(f.name, _ARROW_TO_BQ[f.type]) for f in schema]


@bound_to(bigquery.table.RowIterator)
class Rows:
    def __init__(self, table: pa.Table):
        self.table = table

    def to_arrow(self, progress_bar_type=None, bqstorage_client=None, create_bqstorage_client=True, timeout=None):
        return self.table


@bound_to(bigquery.QueryJob)
class LocalJob:
    def __init__(self, client: "LocalBigQuery", job_id: str, run, schema=None, bytes_processed=0,
                 polls_until_done: int = 1):
        self.client = client
        self.job_id = job_id
        self.self_link = (f"https://www.googleapis.com/bigquery/v2/projects/{client.project}/jobs/{job_id}"
                          f"?location={client.location}")
        self.schema = schema
        self.total_bytes_processed = bytes_processed
        self._run = run
        self._polls_left = polls_until_done
        self._result = None
        self.cancelled_by_client = False

    def done(self, retry=None, timeout=128, reload=True):
        self.client.calls.append(("done", self.job_id))
        self._polls_left -= 1
        if self._polls_left <= 0 and self._result is None:
            self._result = self._run()
        return self._polls_left <= 0

    def cancel(self, client=None, retry=None, timeout=None):
        self.client.calls.append(("cancel", self.job_id))
        self.cancelled_by_client = True
        return True

    def result(self, page_size=None, max_results=None, retry=None, timeout=None, start_index=None, job_retry=None):
        if self._result is None:
            self._result = self._run()
        return self._result


@bound_to(bigquery.Client)
class LocalBigQuery:
    def __init__(self, warehouse: LocalWarehouse, gcs_root: Path, project: str = "my-proj", location: str = "US",
                 bytes_processed: int = 1_000, polls_until_done: int = 1):
        self.warehouse = warehouse
        self.gcs_root = Path(gcs_root)
        self.project = project
        self.location = location
        self.bytes_processed = bytes_processed
        self.polls_until_done = polls_until_done
        self.calls: list[tuple] = []
        self.jobs: list[LocalJob] = []
        self.table_bytes: dict[str, int] = {}

    def query(self, query, job_config=None, job_id=None, job_id_prefix=None, location=None, project=None,
              retry=None, timeout=None, job_retry=None, api_method=None, *, timestamp_precision=None):
        params = {p.name: p.value for p in (job_config.query_parameters if job_config else [])}
        self.calls.append(("query", query, job_config, location, job_id_prefix))
        job_id = f"{job_id_prefix or 'job_'}{len(self.jobs)}"
        if job_config is not None and job_config.dry_run:
            schema = self.warehouse.describe(query, params)
            return LocalJob(self, job_id, lambda: None, bq_schema(schema), self.bytes_processed)
        export = EXPORT.match(query)

        def run():
            if export:
                return self._export(export["uri"], export["select"], params)
            table = pa.Table.from_batches(list(self.warehouse.query_batches(query, params)))
            destination = job_config.destination if job_config else None
            if destination is not None:
                name = f"{destination.project}.{destination.dataset_id}.{destination.table_id}"
                self.warehouse.write_table(name, table)
                self.table_bytes[name] = table.nbytes
            return Rows(table)

        job = LocalJob(self, job_id, run, polls_until_done=self.polls_until_done)
        self.jobs.append(job)
        return job

    def _export(self, uri: str, select: str, params: dict) -> Rows:
        bucket_path = uri.removeprefix("gs://").rsplit("/", 1)[0]
        directory = self.gcs_root / bucket_path
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob("part-*.parquet"):  # overwrite = true
            old.unlink()
        batches = list(self.warehouse.query_batches(select, params))
        table = pa.Table.from_batches(batches) if batches else None
        if table is not None:
            for index, start in enumerate(range(0, max(table.num_rows, 1), 100)):
                pq.write_table(table.slice(start, 100), directory / f"part-{index:012d}.parquet", compression="snappy")
        return Rows(pa.table({}))

    def create_dataset(self, dataset, exists_ok=False, retry=None, timeout=None):
        self.calls.append(("create_dataset", dataset, exists_ok))

    def get_table(self, table, retry=None, timeout=None):
        self.calls.append(("get_table", table))
        rows = next(iter(self.warehouse.query_batches(f"SELECT COUNT(*) AS n FROM `{table}`"))).column(0)[0].as_py()
        return SimpleNamespace(num_rows=rows, num_bytes=self.table_bytes.get(table, 0))


@bound_to(BigQueryReadClient)
class LocalReadClient:
    """The Storage Read API over the local warehouse: one stream, pages of 100 rows, in Arrow."""

    def __init__(self, warehouse: LocalWarehouse):
        self.warehouse = warehouse
        self.calls: list[tuple] = []

    def create_read_session(self, request=None, *, parent=None, read_session=None, max_stream_count=None,
                            retry=None, timeout=None, metadata=()):
        self.calls.append(("create_read_session", parent, read_session.table))
        _, project, _, dataset, _, table = read_session.table.split("/")
        name = f"{project}.{dataset}.{table}"
        schema = self.warehouse.describe(f"SELECT * FROM `{name}`")
        return SimpleNamespace(streams=[SimpleNamespace(name=name)], arrow_schema=arrow_schema(schema))

    def read_rows(self, name, offset=0, retry=None, timeout=None, metadata=(), retry_delay_callback=None):
        self.calls.append(("read_rows", name))
        table = pa.Table.from_batches(list(self.warehouse.query_batches(f"SELECT * FROM `{name}`")))
        return list(read_rows_responses(table.slice(offset), 100))
