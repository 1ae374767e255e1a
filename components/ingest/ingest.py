"""Ingest logic: run a query, split its rows deterministically, stream them to sharded Parquet.

Rows are assigned to splits by FarmHash Fingerprint64 of the split key, the function behind
BigQuery's FARM_FINGERPRINT: for a single STRING or INT64 key column, a row lands in the split
whose bucket range holds ABS(MOD(FARM_FINGERPRINT(CAST(key AS STRING)), 10000)), so a team can
reproduce any split in BigQuery SQL. The hashing runs on the streamed Arrow batches, so both
backends give the same rows to the same split.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import tempfile
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kfkit.warehouse import sql as bqsql
from kfkit.atomic import commit_dirs
from kfkit.config import GCS_MOUNT, check_backend, gcs_uri
from kfkit.errors import ConfigError, IngestError
from kfkit.warehouse.json_functions import decimals_to_strings, doubles_to_strings

log = logging.getLogger("kfkit.ingest")

BUCKETS = 10_000
SPLIT_NAMES = ("train", "eval", "test")
ALL_COLUMNS = "*"
KEY_SEPARATOR = "\x1f"
DEFAULT_MAXIMUM_BYTES_BILLED = 1_000_000_000_000  # 1 TB, about $6 at on-demand prices, per job
DEFAULT_EXPORT_THRESHOLD_BYTES = 1_000_000_000  # from 1 GB BigQuery exports; below, streaming is quicker


@dataclass(frozen=True)
class SplitSpec:
    """Fractions per split (in order) and the key that decides a row's split."""

    fractions: dict[str, float]
    key: str = ALL_COLUMNS

    def __post_init__(self):
        if not self.fractions:
            raise ConfigError("split fractions are empty: give at least one split, e.g. train=1.0")
        for name, fraction in self.fractions.items():
            if not isinstance(fraction, (int, float)) or math.isnan(fraction) or not 0 <= fraction <= 1:
                raise ConfigError(f"split fraction for {name!r} must be between 0 and 1, got {fraction!r}")
        total = sum(self.fractions.values())
        if abs(total - 1.0) > 1e-6:
            listed = ", ".join(f"{k}={v}" for k, v in self.fractions.items())
            raise ConfigError(f"split fractions must sum to 1, got {listed} (sum {total:g})")
        if not self.key or not self.key.strip():
            raise ConfigError("split key is empty: name the column(s) that identify a row, "
                              f"or {ALL_COLUMNS!r} for the whole row")

    @property
    def key_columns(self) -> list[str] | None:
        """The key's column names, or None for the whole row."""
        if self.key.strip() == ALL_COLUMNS:
            return None
        return [c.strip() for c in self.key.split(",") if c.strip()]

    def upper_bounds(self) -> list[int]:
        """Exclusive upper bucket bound of each split, in order; the last is BUCKETS."""
        bounds, cumulative = [], 0.0
        for fraction in self.fractions.values():
            cumulative += fraction
            bounds.append(int(round(cumulative * BUCKETS)))
        bounds[-1] = BUCKETS
        return bounds


@dataclass
class IngestResult:
    rows: dict[str, int]
    shards: dict[str, int]
    schema: list[dict[str, str]]
    seconds: float
    snapshot: str = ""
    source_table: str | None = None
    job_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2)


def schema_description(schema: pa.Schema) -> list[dict[str, str]]:
    return [{"name": f.name, "type": str(f.type)} for f in schema]


def _key_parts(batch: pa.RecordBatch, key_columns: list[str] | None, spell_floats: bool = True) -> list[pa.Array]:
    """Each key column as the string BigQuery's CAST(... AS STRING) gives; floats as float64 when not spell_floats."""
    names = key_columns if key_columns is not None else batch.schema.names
    parts = []
    for name in names:
        column = batch.column(name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if pa.types.is_floating(column.type):  # spelled as BigQuery's CAST(FLOAT64 AS STRING) spells it
            column = doubles_to_strings(column) if spell_floats else column.cast(pa.float64())
        elif pa.types.is_decimal(column.type):  # and CAST(NUMERIC AS STRING): 1.5, not 1.500000000
            column = decimals_to_strings(column)
        elif not pa.types.is_string(column.type):
            column = pc.cast(column, pa.string())
        parts.append(column)
    return parts


def key_strings(batch: pa.RecordBatch, key_columns: list[str] | None) -> pa.Array:
    """The string each row's split bucket is hashed from (nulls as empty strings)."""
    parts = _key_parts(batch, key_columns)
    if len(parts) == 1:
        return parts[0]
    return pc.binary_join_element_wise(*parts, KEY_SEPARATOR, null_handling="replace",
                                       null_replacement="")


def row_fingerprints(batch: pa.RecordBatch, key_columns: list[str] | None) -> np.ndarray:
    """FARM_FINGERPRINT of each row's split key, as int64.

    A key with a float column, over many rows (or any number once the compiled pass is loaded), is
    spelled and hashed in one compiled pass (kfkit.warehouse.farmhash.fingerprint64_joined); the few
    rows whose float spelling that pass leaves to the reference (exact ties, subnormals) are spelled
    by key_strings, as every row of a small batch before then is.
    """
    from kfkit.warehouse.farmhash import fingerprint64_arrow, fingerprint64_joined, joined_is_worth
    names = key_columns if key_columns is not None else batch.schema.names
    if not joined_is_worth(batch.num_rows) or not any(pa.types.is_floating(batch.schema.field(n).type) for n in names):
        return fingerprint64_arrow(key_strings(batch, key_columns))
    fingerprints, deferred = fingerprint64_joined(_key_parts(batch, key_columns, spell_floats=False), KEY_SEPARATOR)
    if len(deferred):
        fingerprints[deferred] = fingerprint64_arrow(key_strings(batch.take(pa.array(deferred)), key_columns))
    return fingerprints


def buckets(batch: pa.RecordBatch, key_columns: list[str] | None) -> np.ndarray:
    """ABS(MOD(FARM_FINGERPRINT(key), 10000)) per row, as BigQuery computes it."""
    return bucket_of(row_fingerprints(batch, key_columns))


def bucket_of(fingerprints: np.ndarray) -> np.ndarray:
    return np.abs(np.fmod(fingerprints, BUCKETS))


class ShardedParquetWriter:
    """Writes one dataset as part-00000.parquet, part-00001.parquet, ... of at most shard_rows rows."""

    def __init__(self, directory: Path, schema: pa.Schema, shard_rows: int):
        self.directory = directory
        self.schema = schema
        self.shard_rows = shard_rows
        self.rows = 0
        self.shards = 0
        self._writer: pq.ParquetWriter | None = None
        self._in_shard = 0

    def write(self, table: pa.Table | pa.RecordBatch) -> None:
        offset = 0
        while offset < table.num_rows:
            if self._writer is None or self._in_shard >= self.shard_rows:
                self._rotate()
            take = min(self.shard_rows - self._in_shard, table.num_rows - offset)
            self._writer.write(table.slice(offset, take))
            self._in_shard += take
            self.rows += take
            offset += take

    def _rotate(self) -> None:
        if self._writer is not None:
            self._writer.close()
        path = self.directory / f"part-{self.shards:05d}.parquet"
        # dictionary pages only where they pay (strings): on floats they tripled the write time
        strings = [f.name for f in self.schema
                   if pa.types.is_string(f.type) or pa.types.is_large_string(f.type) or pa.types.is_dictionary(f.type)]
        self._writer = pq.ParquetWriter(path, self.schema, compression="snappy", use_dictionary=strings)
        self.shards += 1
        self._in_shard = 0

    def close(self) -> None:
        if self._writer is None:  # an empty split still gets a readable (empty) shard
            self._rotate()
        self._writer.close()


def check_columns(schema: pa.Schema, label_column: str, split: SplitSpec) -> None:
    names = schema.names
    if label_column and label_column not in names:
        raise IngestError(f"label column {label_column!r} is not in the query result; "
                          f"columns are: {', '.join(names)}")
    for column in split.key_columns or []:
        if column not in names:
            raise IngestError(f"split key column {column!r} is not in the query result; "
                              f"columns are: {', '.join(names)}")


def check_key_is_deterministic(query: str, split: SplitSpec) -> None:
    bad = bqsql.nondeterministic_columns(query, split.key_columns)
    if bad:
        column, expression = next(iter(bad.items()))
        what = "the whole row is the split key, and column" if split.key_columns is None else "split key column"
        raise IngestError(
            f"{what} {column!r} is computed with {expression}, which changes from run to run, so rows "
            "would move between splits; key the split on a stable column (an id) instead")


def stream_to_splits(batches: Iterator[pa.RecordBatch], schema: pa.Schema, split: SplitSpec,
                     outputs: dict[str, str | Path], shard_rows: int = 1_000_000,
                     progress: Callable[[int], None] | None = None) -> tuple[dict[str, int], dict[str, int], str]:
    """Route streamed rows into one sharded Parquet dataset per split; all-or-nothing on disk.

    Returns rows and shards per split, and a snapshot id: the row count and the sum of the rows'
    key fingerprints, the same for the same rows whatever their order or backend.
    """
    missing = [name for name in split.fractions if name not in outputs]
    if missing:
        raise ConfigError(f"no output path for split(s) {', '.join(missing)}")
    bounds = np.array(split.upper_bounds())
    names = list(split.fractions)
    temps: dict[str, Path] = {}
    writers: dict[str, ShardedParquetWriter] = {}
    # one thread per split writes its Parquet (pyarrow releases the GIL), and one keys the next batch
    # (the compiled pass releases it too) while this one is routed: no core waits on another's step.
    # Bounded queues of pending keys and writes keep memory flat.
    pools = {name: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"kfkit-write-{name}") for name in names}
    keys = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kfkit-key")
    keyed: deque = deque()
    pending: deque = deque()
    total = 0
    digest = 0

    def route(batch: pa.RecordBatch, fingerprints: np.ndarray) -> None:
        nonlocal total, digest
        # order-independent sum (mod 2^64) of the rows' fingerprints: names this data snapshot
        digest = (digest + int(np.add.reduce(fingerprints.view(np.uint64), dtype=np.uint64))) % 2**64
        which = np.searchsorted(bounds, bucket_of(fingerprints), side="right")
        for index, name in enumerate(names):
            rows = np.flatnonzero(which == index)
            if len(rows):  # a take of the split's rows: half the time of a filter by a mask of all of them
                pending.append(pools[name].submit(writers[name].write, batch.take(pa.array(rows))))
        while len(pending) > 2 * len(names):
            pending.popleft().result()
        total += batch.num_rows
        if progress:
            progress(total)

    try:
        for name in names:
            final = Path(outputs[name])
            final.parent.mkdir(parents=True, exist_ok=True)
            temps[name] = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
            writers[name] = ShardedParquetWriter(temps[name], schema, shard_rows)
        for batch in batches:
            if batch.schema != schema:
                batch = pa.Table.from_batches([batch]).cast(schema).combine_chunks().to_batches()[0]
            keyed.append((batch, keys.submit(row_fingerprints, batch, split.key_columns)))
            if len(keyed) > 1:
                batch, fingerprints = keyed.popleft()
                route(batch, fingerprints.result())
        while keyed:
            batch, fingerprints = keyed.popleft()
            route(batch, fingerprints.result())
        while pending:
            pending.popleft().result()
        for writer in writers.values():
            writer.close()
        if total == 0:
            raise IngestError("the query returned no rows: check its WHERE clause and query parameters")
        commit_dirs([(temps[name], Path(outputs[name])) for name in names])
    except BaseException:
        for future in [*pending, *(f for _, f in keyed)]:
            future.cancel()
        for pool in [keys, *pools.values()]:  # no writer may still be writing into what is removed next
            pool.shutdown(wait=True)
        for tmp in temps.values():
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    for pool in [keys, *pools.values()]:
        pool.shutdown(wait=True)
    return ({name: writers[name].rows for name in names},
            {name: writers[name].shards for name in names}, f"{total}-{digest:016x}")


def _bq_label(value: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "-", value.lower())[:63]


def _bq_label_key(key: str) -> str:
    """A label key as BigQuery takes it: like a value, but starting with a lowercase letter
    (https://cloud.google.com/bigquery/docs/labels-intro#requirements), so "2026 budget" is "k2026-budget"."""
    label = _bq_label(key)
    return label if label[:1].isalpha() else ("k" + label)[:63]


def run_ingest(query: str, outputs: dict[str, str | Path], *, split: SplitSpec,
               label_column: str, backend: str = "local", query_parameters: dict | None = None,
               project: str = "", location: str = "US", local_root: str | None = None,
               shard_rows: int = 1_000_000, staging_dataset: str = "kfkit_staging",
               labels: dict[str, str] | None = None, job_id_prefix: str = "kfkit_ingest_",
               maximum_bytes_billed: int = DEFAULT_MAXIMUM_BYTES_BILLED,
               export_threshold_bytes: int = DEFAULT_EXPORT_THRESHOLD_BYTES, gcs_fuse_root: str = GCS_MOUNT,
               gcp_resources: str | None = None, adapter=None, warehouse=None) -> IngestResult:
    """Run `query` on `backend` and write one Parquet dataset per split to `outputs[split]`.

    On BigQuery, a result of at least export_threshold_bytes whose outputs are on Cloud Storage (the
    /gcs/ mount of a Vertex AI step) is split and exported by BigQuery itself; a smaller one, or one
    whose outputs are local (hybrid mode), is streamed through this process.
    """
    started = time.perf_counter()
    check_backend(backend)
    params = dict(query_parameters or {})
    bqsql.parse(query)  # a syntax error stops here, before any job or file
    check_key_is_deterministic(query, split)

    def report(rows: int) -> None:
        log.info("ingest: %d rows streamed (%.0f rows/s)", rows, rows / max(time.perf_counter() - started, 1e-9))

    if backend == "local":
        from kfkit.cloud_jobs import CloudJobs
        from kfkit.warehouse.local import LocalWarehouse
        if gcp_resources:
            CloudJobs(gcp_resources)  # no cloud job: an empty gcp_resources, as GCPC writes none
        warehouse = warehouse or LocalWarehouse(local_root, project=project or bqsql.DEFAULT_LOCAL_PROJECT)
        warehouse.ensure_sample_data()
        schema = warehouse.describe(query, params)
        check_columns(schema, label_column, split)
        rows, shards, snapshot = stream_to_splits(warehouse.query_batches(query, params), schema, split, outputs,
                                                  shard_rows, report)
        return IngestResult(rows, shards, schema_description(schema), time.perf_counter() - started, snapshot)

    from kfkit.adapters.bigquery import BigQueryAdapter, TableRef, human_bytes
    from kfkit.cloud_jobs import CloudJobs
    if adapter is None:
        adapter = BigQueryAdapter(project, location, jobs=CloudJobs(gcp_resources),
                                  maximum_bytes_billed=maximum_bytes_billed)
    with adapter.jobs:
        schema, estimate = adapter.check_cost(query, params)
        check_columns(schema, label_column, split)
        adapter.ensure_dataset(staging_dataset)
        destination = TableRef(adapter.project, staging_dataset, f"ingest_{uuid.uuid4().hex[:16]}")
        job_labels = {"kfkit-component": "ingest",
                      **{_bq_label_key(k): _bq_label(v) for k, v in (labels or {}).items()}}
        job = adapter.query_to_table(query, destination, params, labels=job_labels, job_id_prefix=job_id_prefix)
        table_rows, table_bytes = adapter.table_size(destination)
        uris = {name: gcs_uri(outputs[name], gcs_fuse_root) for name in split.fractions}
        exported = all(uris.values()) and table_bytes >= export_threshold_bytes
        log.info("ingest: the query result is %d rows, %s: %s", table_rows, human_bytes(table_bytes),
                 "BigQuery splits and exports it" if exported else "streaming it through this step")
        selects = {}
        if exported:
            rows, shards, snapshot, selects = export_splits(adapter, destination, schema, split, outputs, uris,
                                                            job_labels)
        else:
            rows, shards, snapshot = stream_to_splits(adapter.read_table(destination), schema, split, outputs,
                                                      shard_rows, report)
    return IngestResult(rows, shards, schema_description(schema), time.perf_counter() - started, snapshot,
                        source_table=destination.full_id, job_id=getattr(job, "job_id", None),
                        extra={"table_uri": destination.api_uri, "project": destination.project,
                               "dataset": destination.dataset, "table": destination.table,
                               "bytes_processed_estimate": estimate, "result_bytes": table_bytes,
                               "path": "bigquery-export" if exported else "streamed", "selects": selects,
                               "location": adapter.location})


def export_splits(adapter, table, schema: pa.Schema, split: SplitSpec, outputs: dict[str, str | Path],
                  uris: dict[str, str], labels: dict[str, str]) -> tuple[dict[str, int], dict[str, int], str, dict[str, str]]:
    """Split `table` and export each split as Parquet shards with BigQuery jobs; no row passes through here.

    Returns rows, shards and the snapshot id as stream_to_splits does, and each split's SELECT
    (validate computes the split's statistics with it, in BigQuery).
    """
    from kfkit.components.ingest import bigquery_split as bq
    names = list(split.fractions)
    ranges = bq.bucket_ranges(split.upper_bounds(), names)
    summary = pa.Table.from_batches(adapter.query_to_arrow(
        bq.summary_sql(table.full_id, schema, split.key_columns, ranges),
        labels={**labels, "kfkit-stage": "split-summary"}, what="split summary query")).to_pylist()[0]
    total = int(summary["row_count"])
    if total == 0:
        raise IngestError("the query returned no rows: check its WHERE clause and query parameters")
    rows, shards, selects = {}, {}, {}
    for name in names:
        low, high = ranges[name]
        select = selects[name] = bq.split_select_sql(table.full_id, schema, split.key_columns, low, high)
        adapter.run_query(bq.export_sql(select, uris[name]), labels={**labels, "kfkit-stage": f"export-{name}"},
                          job_id_prefix=f"kfkit_export_{name}_", what=f"export of the {name} split")
        rows[name] = int(summary[f"rows_{name}"])
        local = Path(outputs[name])  # the same prefix through the Cloud Storage mount
        shards[name] = len(list(local.glob("*.parquet"))) if local.is_dir() else 0
    return rows, shards, bq.snapshot_id(total, summary["fingerprint_sum"]), selects
