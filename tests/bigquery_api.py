"""A protocol-level fake of BigQuery's REST API (v2), for the real `google-cloud-bigquery` client over its
real transport (requests), pointed here with client_options={"api_endpoint": url} (kfkit:
KFKIT_BIGQUERY_API_ENDPOINT) and anonymous credentials.

It serves what kfkit calls: jobs.insert, jobs.get, jobs.cancel, jobs.getQueryResults, datasets.insert,
datasets.get, tables.get and tabledata.list. Request bodies are decoded strictly with the field names
of BigQuery's REST reference (an unknown field is a 400, as a misspelled one would be silently ignored
by no one but BigQuery's own proto parser), and the job requests are checked against the rules that
reference documents, each cited where it is enforced. Queries run on DuckDB through kfkit's own
BigQuery translation (kfkit.warehouse.local.LocalWarehouse), so a job computes what it asks for;
rows go back in BigQuery's REST row format ({"f": [{"v": ...}]}, with the schema). A query's result
is kept as a table (its destination, or an anonymous one as BigQuery does), which the Storage Read
API fake (tests/bigquery_storage_api.py) reads. EXPORT DATA writes Parquet shards under `gcs_root`,
the directory standing in for Cloud Storage (as Vertex AI's /gcs/ mount shows it).
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import decimal
import json
import re
import threading
import unicodedata
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from kfkit.errors import QueryError
from kfkit.warehouse import sql as bqsql
from kfkit.warehouse.local import LocalWarehouse

from tests.http_fake import LocalHttpService

API = "/bigquery/v2"
REST = "https://cloud.google.com/bigquery/docs/reference/rest/v2/"

# Field names from the REST reference (and google-cloud-bigquery's own resource handling, which
# writes them): Job, JobConfiguration, JobConfigurationQuery, JobReference, TableReference,
# QueryParameter, Dataset.
JOB_FIELDS = {"kind", "etag", "id", "selfLink", "user_email", "configuration", "jobReference", "statistics",
              "status", "principal_subject", "jobCreationReason"}
JOB_CONFIGURATION_FIELDS = {"jobType", "query", "load", "copy", "extract", "dryRun", "jobTimeoutMs", "labels",
                            "reservation", "maxSlots"}
QUERY_FIELDS = {"query", "destinationTable", "tableDefinitions", "userDefinedFunctionResources", "createDisposition",
                "writeDisposition", "defaultDataset", "priority", "allowLargeResults", "useQueryCache",
                "flattenResults", "maximumBillingTier", "maximumBytesBilled", "useLegacySql", "parameterMode",
                "queryParameters", "systemVariables", "schemaUpdateOptions", "timePartitioning", "rangePartitioning",
                "clustering", "destinationEncryptionConfiguration", "scriptOptions", "connectionProperties",
                "createSession", "continuous", "writeIncrementalResults"}
JOB_REFERENCE_FIELDS = {"projectId", "jobId", "location"}
TABLE_REFERENCE_FIELDS = {"projectId", "datasetId", "tableId"}
QUERY_PARAMETER_FIELDS = {"name", "parameterType", "parameterValue"}
PARAMETER_TYPE_FIELDS = {"type", "arrayType", "structTypes", "rangeElementType", "timestampPrecision"}
PARAMETER_VALUE_FIELDS = {"value", "arrayValues", "structValues", "rangeValue"}
DATASET_FIELDS = {"kind", "etag", "id", "selfLink", "datasetReference", "friendlyName", "description",
                  "defaultTableExpirationMs", "defaultPartitionExpirationMs", "labels", "access", "creationTime",
                  "lastModifiedTime", "location", "defaultEncryptionConfiguration", "satisfiesPzs", "satisfiesPzi",
                  "type", "linkedDatasetSource", "linkedDatasetMetadata", "externalDatasetReference",
                  "externalCatalogDatasetOptions", "isCaseInsensitive", "defaultCollation", "defaultRoundingMode",
                  "maxTimeTravelHours", "tags", "storageBillingModel", "restrictions", "resourceTags"}
DATASET_REFERENCE_FIELDS = {"datasetId", "projectId"}

SCALAR_TYPES = {"INT64", "FLOAT64", "BOOL", "STRING", "BYTES", "DATE", "DATETIME", "TIME", "TIMESTAMP", "NUMERIC",
                "BIGNUMERIC", "JSON", "GEOGRAPHY", "INTERVAL"}
EXPORT = re.compile(r"^EXPORT DATA OPTIONS \(uri = '(?P<uri>[^']+)', format = 'PARQUET', "
                    r"compression = 'SNAPPY', overwrite = true\) AS\n(?P<select>.*)$", re.S)
# https://cloud.google.com/bigquery/docs/reference/rest/v2/JobReference: letters, digits, _ and -, at most 1,024
JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,1024}$")
# https://cloud.google.com/bigquery/docs/datasets#dataset-naming: letters, digits and _, at most 1,024
DATASET_ID = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
# https://cloud.google.com/bigquery/docs/labels-intro#requirements: at most 64 labels; keys 1-63 and
# values 0-63 characters of lowercase letters, digits, _ and - (international characters allowed); a key
# starts with a lowercase letter or an international character
LABEL_KEY = re.compile(r"^[a-z\u0080-\uffff][a-z0-9_\-\u0080-\uffff]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_\-\u0080-\uffff]{0,63}$")

_ARROW_TO_BQ = [(pa.types.is_string, "STRING"), (pa.types.is_large_string, "STRING"), (pa.types.is_binary, "BYTES"),
                (pa.types.is_integer, "INTEGER"), (pa.types.is_floating, "FLOAT"), (pa.types.is_boolean, "BOOLEAN"),
                (pa.types.is_date, "DATE"), (pa.types.is_time, "TIME")]


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message

    def body(self) -> dict:
        return {"code": self.status, "message": self.message,
                "errors": [{"reason": self.reason, "message": self.message, "domain": "global"}],
                "status": {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 409: "ALREADY_EXISTS"}.get(self.status, "UNKNOWN")}


def invalid(message: str) -> ApiError:
    return ApiError(400, "invalid", message)


def strict(value: Any, allowed: set[str], where: str) -> dict:
    if not isinstance(value, dict):
        raise invalid(f"{where} must be a JSON object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise invalid(f"Invalid JSON payload received. Unknown name {unknown[0]!r} at '{where}': Cannot find field.")
    return value


def table_id_problem(table_id: str) -> str | None:
    """https://cloud.google.com/bigquery/docs/tables#table_naming: up to 1,024 UTF-8 bytes of Unicode
    letters (L), marks (M), numbers (N), connectors (Pc, _), dashes (Pd) and spaces (Zs)."""
    if not 1 <= len(table_id.encode()) <= 1024:
        return "must be 1-1024 bytes"
    bad = [c for c in table_id if unicodedata.category(c)[0] not in "LMN" and unicodedata.category(c) not in ("Pc", "Pd", "Zs")]
    return f"contains {bad[0]!r}" if bad else None


def check_labels(labels: Any, where: str) -> None:
    strict(labels, set(labels) if isinstance(labels, dict) else set(), where)
    if len(labels) > 64:
        raise invalid(f"{where}: at most 64 labels ({len(labels)} given)")
    for key, value in labels.items():
        if not LABEL_KEY.match(key):
            raise invalid(f"{where}: invalid label key {key!r}: 1-63 lowercase letters, digits, _ or -, "
                          "starting with a lowercase letter")
        if not isinstance(value, str) or not LABEL_VALUE.match(value):
            raise invalid(f"{where}: invalid label value {value!r} for {key!r}: at most 63 lowercase letters, "
                          "digits, _ or -")


def bq_field(name: str, kind: pa.DataType) -> dict:
    mode = "NULLABLE"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        mode, kind = "REPEATED", kind.value_type
    if pa.types.is_struct(kind):
        out = {"name": name, "type": "RECORD", "mode": mode, "fields": [bq_field(f.name, f.type) for f in kind]}
    elif pa.types.is_timestamp(kind):
        out = {"name": name, "type": "TIMESTAMP" if kind.tz else "DATETIME", "mode": mode}
    elif pa.types.is_decimal(kind):
        out = {"name": name, "type": "NUMERIC" if kind.precision <= 38 and kind.scale <= 9 else "BIGNUMERIC", "mode": mode}
    else:
        found = [bq for test, bq in _ARROW_TO_BQ if test(kind)]
        if not found:
            raise invalid(f"column {name} has the type {kind}, which the fake cannot describe")
        out = {"name": name, "type": found[0], "mode": mode}
    return out


def rest_value(value: Any, kind: pa.DataType, int64_timestamp: bool) -> Any:
    """One cell as jobs.getQueryResults / tabledata.list deliver it: strings, nested f/v for records."""
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        # https://cloud.google.com/bigquery/docs/arrays#nulls: BigQuery has no NULL array, only []
        if value is None:
            return []
        return [{"v": rest_value(v, kind.value_type, int64_timestamp)} for v in value]
    if value is None:
        return None
    if pa.types.is_struct(kind):
        return {"f": [{"v": rest_value(value[f.name], f.type, int64_timestamp)} for f in kind]}
    if isinstance(value, bool):
        return "true" if value else "false"
    if pa.types.is_timestamp(kind) and kind.tz:
        micros = (value - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(microseconds=1)
        return str(micros) if int64_timestamp else repr(micros / 1e6)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, float):
        # non-finite doubles as BigQuery's JSON spells them
        return {float("inf"): "Infinity", float("-inf"): "-Infinity"}.get(value, "NaN" if value != value else repr(value))
    return str(value)


def python_value(kind: str, value: Any) -> Any:
    if value is None:
        return None
    converters = {"INT64": int, "FLOAT64": float, "BOOL": lambda v: v == "true", "STRING": str,
                  "NUMERIC": decimal.Decimal, "BIGNUMERIC": decimal.Decimal, "DATE": dt.date.fromisoformat,
                  "DATETIME": dt.datetime.fromisoformat, "TIMESTAMP": lambda v: dt.datetime.fromisoformat(v)}
    if kind not in converters:
        raise invalid(f"the fake does not decode {kind} query parameters")
    return converters[kind](value)


def decode_parameters(parameters: Any, mode: str | None) -> dict[str, Any]:
    """https://cloud.google.com/bigquery/docs/reference/rest/v2/QueryParameter, named parameters only."""
    out = {}
    for index, parameter in enumerate(parameters or []):
        where = f"configuration.query.queryParameters[{index}]"
        strict(parameter, QUERY_PARAMETER_FIELDS, where)
        if mode != "NAMED" or not parameter.get("name"):
            raise invalid(f"{where}: kfkit's parameters are named (parameterMode NAMED and a name)")
        kind = strict(parameter.get("parameterType"), PARAMETER_TYPE_FIELDS, where + ".parameterType")
        value = strict(parameter.get("parameterValue", {}), PARAMETER_VALUE_FIELDS, where + ".parameterValue")
        if kind.get("type") == "ARRAY":
            element = strict(kind.get("arrayType"), PARAMETER_TYPE_FIELDS, where + ".parameterType.arrayType")
            if element.get("type") not in SCALAR_TYPES:
                raise invalid(f"{where}: unknown array element type {element.get('type')!r}")
            out[parameter["name"]] = [python_value(element["type"], strict(v, PARAMETER_VALUE_FIELDS, where).get("value"))
                                      for v in value.get("arrayValues", [])]
        elif kind.get("type") in SCALAR_TYPES:
            out[parameter["name"]] = python_value(kind["type"], value.get("value"))
        else:
            raise invalid(f"{where}: unknown parameter type {kind.get('type')!r}")
    return out


class _Connection:
    """One DuckDB connection kept open for the fake's life (opening one costs kfkit's macros, ~0.1 s):
    LocalWarehouse's `with connect()` and close() leave it open."""

    def __init__(self, con):
        self._con = con

    def __getattr__(self, name):
        return getattr(self._con, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def close(self):
        pass


class _Warehouse(LocalWarehouse):
    def __init__(self, root, project):
        super().__init__(root, project)
        self._connection = _Connection(super().connect())

    def connect(self, read_only: bool = False):
        return self._connection

    def query(self, sql: str, params: dict | None = None) -> pa.Table:
        batches = list(self.query_batches(sql, params))
        return pa.Table.from_batches(batches) if batches else self.describe(sql, params).empty_table()


@dataclass
class Job:
    resource: dict
    result: pa.Table | None = None
    error: dict | None = None
    gets_until_done: int = 0


@dataclass
class BigQueryApi(LocalHttpService):
    warehouse: LocalWarehouse
    gcs_root: Path
    project: str = "my-proj"
    bytes_processed: int = 10_000      # what each dry run estimates and each query job bills
    polls_until_done: int = 0          # jobs.get calls that still answer RUNNING
    page_rows: int = 10_000            # rows per getQueryResults / tabledata.list page
    datasets: dict[tuple[str, str], dict] = field(default_factory=dict)
    jobs: dict[tuple[str, str], Job] = field(default_factory=dict)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)  # (method, path with query, JSON body)
    cancelled: list[str] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)  # errorResults the next query jobs end with, in order
    table_bytes: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        self._serve(('GET', 'POST'), keep_alive=True)
        self._lock = threading.RLock()
        self._tokens: dict[str, tuple[str, int]] = {}
        self._db = _Warehouse(self.warehouse.root, self.project)
        self._tables: dict[str, pa.Table | None] = {name: None for name in self._db.tables()}  # None: not read yet

    def __exit__(self, *exc):
        super().__exit__(*exc)
        self._db._connection._con.close()
        self._tables.clear()  # Arrow tables DuckDB produced hold its objects until the interpreter exits
        self.jobs.clear()

    # --- what tests arrange and read ---------------------------------------------------------------
    def add_dataset(self, project: str, dataset: str, location: str = "US") -> dict:
        resource = {"kind": "bigquery#dataset", "id": f"{project}:{dataset}", "location": location,
                    "datasetReference": {"projectId": project, "datasetId": dataset},
                    "selfLink": f"{self.url}{API}/projects/{project}/datasets/{dataset}",
                    "creationTime": "1767225600000", "lastModifiedTime": "1767225600000", "etag": "e1"}
        self.datasets[(project, dataset)] = resource
        return resource

    def write_table(self, full_id: str, table: pa.Table) -> None:
        """A table in the warehouse, as a test arranges one (its dataset added first)."""
        with self._lock:
            self._db.write_table(full_id, table)
            project, dataset, name = full_id.split(".")
            self._tables[f"{bqsql.local_schema_name(project, dataset)}.{name}"] = table

    def inserted_jobs(self) -> list[dict]:
        """The job resources kfkit sent (jobs.insert bodies), in order."""
        return [body for method, path, body in self.requests if method == "POST" and path.split("?")[0].endswith("/jobs")]

    # --- HTTP ------------------------------------------------------------------------------------
    def _handle(self, handler, method: str) -> None:
        parts = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            try:
                body = json.loads(raw) if raw else None
            except ValueError as exc:
                raise invalid(f"Invalid JSON payload received. {exc}") from exc
            with self._lock:
                self.requests.append((method, handler.path, copy.deepcopy(body)))  # as sent, before the fake fills it in
                status, payload = self._route(method, [unquote(s) for s in parts.path.split("/")], query, body)
        except ApiError as exc:
            status, payload = exc.status, {"error": exc.body()}
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=UTF-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _route(self, method, segments, query, body):
        match segments:
            case ["", "bigquery", "v2", "projects", project, "jobs"] if method == "POST":
                return 200, self._insert_job(project, body)
            case ["", "bigquery", "v2", "projects", project, "jobs", job_id] if method == "GET":
                return 200, self._get_job(project, job_id, query, poll=True).resource
            case ["", "bigquery", "v2", "projects", project, "jobs", job_id, "cancel"] if method == "POST":
                job = self._get_job(project, job_id, query)
                self.cancelled.append(job_id)
                # https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs/cancel: a running job ends
                # with the reason "stopped"
                if job.resource["status"]["state"] != "DONE":
                    job.error = {"reason": "stopped", "message": "Job execution was cancelled: User requested cancellation"}
                    job.gets_until_done = 0
                    job.resource["status"] = {"state": "DONE", "errorResult": job.error, "errors": [job.error]}
                return 200, {"kind": "bigquery#jobCancelResponse", "job": job.resource}
            case ["", "bigquery", "v2", "projects", project, "queries", job_id] if method == "GET":
                return 200, self._query_results(project, job_id, query)
            case ["", "bigquery", "v2", "projects", project, "datasets"] if method == "POST":
                return 200, self._insert_dataset(project, body)
            case ["", "bigquery", "v2", "projects", project, "datasets", dataset] if method == "GET":
                return 200, self._dataset(project, dataset)
            case ["", "bigquery", "v2", "projects", project, "datasets", dataset, "tables", table] if method == "GET":
                return 200, self._table(project, dataset, table)
            case ["", "bigquery", "v2", "projects", project, "datasets", dataset, "tables", table, "data"] \
                    if method == "GET":
                data = self._read(project, dataset, table)
                rows, token = self._page(data, query)
                return 200, {"kind": "bigquery#tableDataList", "totalRows": str(data.num_rows), "rows": rows,
                             **({"pageToken": token} if token else {})}
        raise ApiError(404, "notFound", f"Not found: {method} {'/'.join(segments)}")

    # --- datasets and tables ---------------------------------------------------------------------
    def _dataset(self, project: str, dataset: str, location: str | None = None) -> dict:
        found = self.datasets.get((project, dataset))
        if found is None:
            raise ApiError(404, "notFound", f"Not found: Dataset {project}:{dataset}")
        # https://cloud.google.com/bigquery/docs/locations#specify_locations: a job runs in one location
        # and reaches only datasets there
        if location is not None and found["location"].lower() != location.lower():
            raise ApiError(404, "notFound", f"Not found: Dataset {project}:{dataset} was not found in location {location}")
        return found

    def _insert_dataset(self, project: str, body: Any) -> dict:
        """https://cloud.google.com/bigquery/docs/reference/rest/v2/datasets/insert"""
        strict(body, DATASET_FIELDS, "dataset")
        reference = strict(body.get("datasetReference"), DATASET_REFERENCE_FIELDS, "dataset.datasetReference")
        dataset = reference.get("datasetId", "")
        if reference.get("projectId", project) != project:
            raise invalid("datasetReference.projectId must be the project of the request")
        if not DATASET_ID.match(dataset):
            raise invalid(f"Invalid dataset ID \"{dataset}\". Dataset IDs must be alphanumeric (plus underscores) "
                          "and must be at most 1024 characters long.")
        check_labels(body.get("labels", {}), "dataset.labels")
        if (project, dataset) in self.datasets:
            raise ApiError(409, "duplicate", f"Already Exists: Dataset {project}:{dataset}")
        resource = self.add_dataset(project, dataset, body.get("location") or "US")
        resource.update({k: v for k, v in body.items() if k not in resource})
        return resource

    def _exists(self, full_id: str) -> bool:
        project, dataset, table = full_id.split(".")
        return f"{bqsql.local_schema_name(project, dataset)}.{table}" in self._tables

    def _read(self, project: str, dataset: str, table: str) -> pa.Table:
        self._dataset(project, dataset)
        key = f"{bqsql.local_schema_name(project, dataset)}.{table}"
        if key not in self._tables:
            raise ApiError(404, "notFound", f"Not found: Table {project}:{dataset}.{table}")
        if self._tables[key] is None:
            self._tables[key] = self._db.query(f"SELECT * FROM `{project}.{dataset}.{table}`")
        return self._tables[key]

    def _table(self, project: str, dataset: str, table: str) -> dict:
        data = self._read(project, dataset, table)
        full_id = f"{project}.{dataset}.{table}"
        resource = {"kind": "bigquery#table", "id": f"{project}:{dataset}.{table}", "type": "TABLE",
                    "tableReference": {"projectId": project, "datasetId": dataset, "tableId": table},
                    "schema": {"fields": [bq_field(f.name, f.type) for f in data.schema]},
                    "numRows": str(data.num_rows), "numBytes": str(self.table_bytes.get(full_id, data.nbytes)),
                    "location": self.datasets[(project, dataset)]["location"], "creationTime": "1767225600000"}
        expiration = self.datasets[(project, dataset)].get("defaultTableExpirationMs")
        if expiration:
            resource["expirationTime"] = str(1767225600000 + int(expiration))
        return resource

    # --- jobs ------------------------------------------------------------------------------------
    def _get_job(self, project: str, job_id: str, query: dict, poll: bool = False) -> Job:
        job = self.jobs.get((project, job_id))
        # https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs/get: location is required for
        # a job outside US and EU
        if job is None or (query.get("location") or "US").lower() != job.resource["jobReference"]["location"].lower():
            raise ApiError(404, "notFound", f"Not found: Job {project}:{query.get('location', 'US')}.{job_id}")
        if poll and job.gets_until_done > 0:
            job.gets_until_done -= 1
            if job.gets_until_done == 0:
                job.resource["status"] = {"state": "DONE", **({"errorResult": job.error, "errors": [job.error]}
                                                              if job.error else {})}
        return job

    def _insert_job(self, project: str, body: Any) -> dict:
        """https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs/insert"""
        strict(body, JOB_FIELDS, "job")
        reference = strict(body.get("jobReference", {}), JOB_REFERENCE_FIELDS, "job.jobReference")
        job_id = reference.get("jobId") or uuid.uuid4().hex
        if not JOB_ID.match(job_id):
            raise invalid(f"Invalid job ID \"{job_id}\". Job IDs must be alphanumeric (plus underscores and dashes) "
                          "and must be at most 1024 characters long.")
        if reference.get("projectId", project) != project:
            raise invalid("jobReference.projectId must be the project of the request")
        location = reference.get("location") or "US"
        if (project, job_id) in self.jobs:
            raise ApiError(409, "duplicate", f"Already Exists: Job {project}:{location}.{job_id}")
        configuration = strict(body.get("configuration"), JOB_CONFIGURATION_FIELDS, "job.configuration")
        check_labels(configuration.get("labels", {}), "job.configuration.labels")
        config = strict(configuration.get("query"), QUERY_FIELDS, "job.configuration.query")
        # https://cloud.google.com/bigquery/docs/reference/rest/v2/Job#JobConfigurationQuery: useLegacySql
        # defaults to true on jobs.insert, so a GoogleSQL query must say false
        if config.get("useLegacySql") is not False:
            raise invalid("Legacy SQL: kfkit's queries are GoogleSQL; the job must set useLegacySql false")
        params = decode_parameters(config.get("queryParameters"), config.get("parameterMode"))
        sql = config.get("query") or ""
        reference = {"projectId": project, "jobId": job_id, "location": location}
        resource = {"kind": "bigquery#job", "id": f"{project}:{location}.{job_id}", "etag": "e1",
                    "selfLink": f"{self.url}{API}/projects/{project}/jobs/{job_id}?location={location}",
                    "user_email": "anonymous@example.com", "jobReference": reference, "configuration": configuration}
        job = Job(resource)
        try:
            if self.failures and not configuration.get("dryRun"):
                failure = self.failures.pop(0)
                raise ApiError(500, failure["reason"], failure["message"])
            schema, result = self._run(project, location, sql, config, params, bool(configuration.get("dryRun")))
        except ApiError as exc:
            if configuration.get("dryRun"):
                raise  # a dry run that fails is the request's own error
            job.error = {"reason": exc.reason, "message": exc.message, **({"location": "query"} if exc.status == 400 else {})}
            schema, result = None, None
        statistics = {"creationTime": "1767225600000", "startTime": "1767225600001",
                      "totalBytesProcessed": str(self.bytes_processed),
                      "query": {"totalBytesProcessed": str(self.bytes_processed), "cacheHit": False,
                                "statementType": "EXPORT_DATA" if EXPORT.match(sql) else "SELECT"}}
        if schema is not None:
            statistics["query"]["schema"] = {"fields": [bq_field(f.name, f.type) for f in schema]}
        if not configuration.get("dryRun"):
            statistics["endTime"] = "1767225600002"
            statistics["query"]["totalBytesBilled"] = str(self.bytes_processed)
        resource["statistics"] = statistics
        job.result = result
        if configuration.get("dryRun"):
            resource["status"] = {"state": "DONE"}
            return resource  # a dry run is not kept: jobs.get cannot find it
        job.gets_until_done = self.polls_until_done
        if self.polls_until_done:
            resource["status"] = {"state": "RUNNING"}
        else:
            resource["status"] = {"state": "DONE", **({"errorResult": job.error, "errors": [job.error]} if job.error else {})}
        self.jobs[(project, job_id)] = job
        return resource

    def _run(self, project, location, sql, config, params, dry_run) -> tuple[pa.Schema, pa.Table | None]:
        export = EXPORT.match(sql)
        select = export["select"] if export else sql
        try:
            tree = bqsql.parse(select)
        except QueryError as exc:
            raise invalid(str(exc)) from exc
        for ref in bqsql.table_references(tree, project):
            self._dataset(ref[0], ref[1], location)
            if not self._exists(".".join(ref)):
                raise ApiError(404, "notFound",
                               f"Not found: Table {ref[0]}:{ref[1]}.{ref[2]} was not found in location {location}")
        destination = config.get("destinationTable")
        if destination is not None:
            strict(destination, TABLE_REFERENCE_FIELDS, "job.configuration.query.destinationTable")
            self._check_destination(destination, config, location, bool(export))
        if dry_run:
            try:
                schema = self._db.describe(select, params)
            except QueryError as exc:
                raise invalid(str(exc)) from exc
            return (pa.schema([]) if export else schema), None
        maximum = config.get("maximumBytesBilled")
        # https://cloud.google.com/bigquery/docs/reference/rest/v2/Job#JobConfigurationQuery:
        # maximumBytesBilled is an int64 (as a string); a job that would bill more fails without running
        if maximum is not None and self.bytes_processed > int(maximum):
            raise ApiError(400, "bytesBilledLimitExceeded",
                           f"Query exceeded limit for bytes billed: {int(maximum)}. {self.bytes_processed} or higher required.")
        try:
            table = self._db.query(select, params)
        except QueryError as exc:
            raise invalid(str(exc)) from exc
        schema = table.schema
        if export:
            self._export(export["uri"], table)
            return pa.schema([]), pa.table({})
        if destination is None:
            # https://cloud.google.com/bigquery/docs/cached-results: results go to an anonymous table
            dataset = "_" + uuid.uuid5(uuid.NAMESPACE_DNS, project + location).hex
            if (project, dataset) not in self.datasets:
                self.add_dataset(project, dataset, location)
            destination = {"projectId": project, "datasetId": dataset, "tableId": "anon" + uuid.uuid4().hex}
            config["destinationTable"] = destination
        name = f"{destination['projectId']}.{destination['datasetId']}.{destination['tableId']}"
        if config.get("writeDisposition") == "WRITE_APPEND" and self._exists(name):
            table = pa.concat_tables([self._read(*name.split(".")), table.cast(self._read(*name.split(".")).schema)])
        self.write_table(name, table)
        self.table_bytes[name] = table.nbytes
        return schema, table

    def _check_destination(self, destination: dict, config: dict, location: str, export: bool) -> None:
        if export:
            raise invalid("EXPORT DATA cannot have a destination table")
        self._dataset(destination.get("projectId", ""), destination.get("datasetId", ""), location)
        problem = table_id_problem(destination.get("tableId", ""))
        if problem:
            raise invalid(f"Invalid table ID \"{destination.get('tableId')}\": {problem}")
        # https://cloud.google.com/bigquery/docs/reference/rest/v2/Job#JobConfigurationQuery:
        # createDisposition CREATE_IF_NEEDED (default) or CREATE_NEVER; writeDisposition WRITE_EMPTY
        # (the default), WRITE_TRUNCATE or WRITE_APPEND
        create = config.get("createDisposition", "CREATE_IF_NEEDED")
        write = config.get("writeDisposition", "WRITE_EMPTY")
        if create not in ("CREATE_IF_NEEDED", "CREATE_NEVER"):
            raise invalid(f"Invalid createDisposition {create!r}")
        if write not in ("WRITE_EMPTY", "WRITE_TRUNCATE", "WRITE_APPEND", "WRITE_TRUNCATE_DATA"):
            raise invalid(f"Invalid writeDisposition {write!r}")
        name = f"{destination['projectId']}.{destination['datasetId']}.{destination['tableId']}"
        exists = self._exists(name)
        if create == "CREATE_NEVER" and not exists:
            raise ApiError(404, "notFound", f"Not found: Table {name}")
        if write == "WRITE_EMPTY" and exists and self._read(*name.split(".")).num_rows:
            raise ApiError(409, "duplicate", f"Already Exists: Table {name}")

    def _export(self, uri: str, table: pa.Table) -> None:
        # https://cloud.google.com/bigquery/docs/reference/standard-sql/export-statements: one * in the
        # URI, replaced by a zero-padded 12-digit shard number; overwrite = true replaces what is there
        if uri.count("*") != 1 or not uri.startswith("gs://"):
            raise invalid(f"EXPORT DATA needs a gs:// URI with exactly one '*': {uri}")
        directory = self.gcs_root / uri[len("gs://"):].rsplit("/", 1)[0]
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob("*.parquet"):
            old.unlink()
        for index, start in enumerate(range(0, max(table.num_rows, 1), 100)):
            target = directory / uri.rsplit("/", 1)[1].replace("*", f"{index:012d}")
            pq.write_table(table.slice(start, 100), target, compression="snappy")

    def _query_results(self, project: str, job_id: str, query: dict) -> dict:
        """https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs/getQueryResults"""
        job = self._get_job(project, job_id, query)
        out = {"kind": "bigquery#getQueryResultsResponse", "etag": "e1",
               "jobReference": job.resource["jobReference"], "jobComplete": job.resource["status"]["state"] == "DONE"}
        if not out["jobComplete"]:
            return out
        if job.error:
            status = 404 if job.error["reason"] == "notFound" else 400
            raise ApiError(status, job.error["reason"], job.error["message"])
        table = job.result
        out.update({"schema": job.resource["statistics"]["query"].get("schema", {"fields": []}),
                    "totalRows": str(table.num_rows), "totalBytesProcessed": str(self.bytes_processed),
                    "cacheHit": False})
        rows, token = self._page(table, query)
        out["rows"] = rows
        if token:
            out["pageToken"] = token
        return out

    def _page(self, table: pa.Table, query: dict) -> tuple[list, str | None]:
        """maxResults, startIndex and pageToken as jobs.getQueryResults and tabledata.list take them."""
        start = int(query.get("startIndex") or 0)
        if "pageToken" in query:
            if query["pageToken"] not in self._tokens:
                raise invalid("Invalid page token")
            start = self._tokens[query["pageToken"]][1]
        size = min(int(query["maxResults"]) if "maxResults" in query else self.page_rows, self.page_rows)
        int64_timestamp = (query.get("formatOptions.useInt64Timestamp") or "").lower() == "true"
        chunk = table.slice(start, size)
        rows = [{"f": [{"v": rest_value(row[f.name], f.type, int64_timestamp)} for f in table.schema]}
                for row in chunk.to_pylist()]
        token = None
        if start + size < table.num_rows:
            token = uuid.uuid4().hex
            self._tokens[token] = ("page", start + size)
        return rows, token
