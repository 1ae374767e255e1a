"""Batch prediction logic. Locally: the registered model (by alias) over a table of the DuckDB
warehouse, streamed in batches, predictions written to a new table with the model version on every
row (atomically: a failed run leaves no table). On Google Cloud: a Vertex AI batch prediction job
from a BigQuery table to BigQuery."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Iterator

import numpy as np
import pyarrow as pa

from kfkit.errors import ConfigError
from kfkit.tabular import features_to_numpy

log = logging.getLogger("kfkit.batch_predict")


def prediction_batches(model, batches: Iterator[pa.RecordBatch], model_version: str) -> Iterator[pa.RecordBatch]:
    """Each input batch with the model's outputs and the model version appended."""
    spec = model.spec
    for batch in batches:
        missing = [name for name in spec.signature if name not in batch.schema.names]
        if missing:
            raise ConfigError(f"the source table lacks column(s) {', '.join(map(repr, missing))} that the model needs")
        outputs = model.predict_arrays(features_to_numpy(batch, spec))
        columns, names = list(batch.columns), list(batch.schema.names)
        if spec.task == "regression":
            columns.append(pa.array(outputs["value"].astype(np.float64)))
            names.append(f"predicted_{spec.label}")
        else:
            columns.append(pa.array([c.decode() for c in outputs["classes"]], pa.string()))
            names.append(f"predicted_{spec.label}")
            scores = outputs["scores"].astype(np.float64)
            columns.append(pa.FixedSizeListArray.from_arrays(pa.array(scores.ravel()), scores.shape[1]).cast(
                pa.list_(pa.float64())))
            names.append("scores")
        columns.append(pa.array(np.full(batch.num_rows, model_version, dtype=object), pa.string()))
        names.append("model_version")
        yield pa.RecordBatch.from_arrays(columns, names=names)


def predict_local(source_table: str, destination_table: str, *, model_name: str, model_alias: str = "champion",
                  local_root: str | None = None, batch_rows: int = 65_536, registry=None, warehouse=None) -> dict:
    from kfkit.adapters.mlflow_registry import MlflowRegistry
    from kfkit.serving.model_io import LoadedModel
    from kfkit.warehouse.local import LocalWarehouse, split_table_name

    registry = registry or MlflowRegistry(local_root)
    version = registry.version_by_alias(model_name, model_alias)
    if version is None:
        raise ConfigError(f"no version of model {model_name!r} holds the alias {model_alias!r}; "
                          "run the training pipeline first")
    warehouse = warehouse or LocalWarehouse(local_root)
    model = LoadedModel(version.model_dir)
    started = time.perf_counter()
    project, dataset, table = split_table_name(destination_table, warehouse.project)
    staging = f"{project}.{dataset}._kfkit_tmp_{uuid.uuid4().hex[:8]}"
    first = next(iter(prediction_batches(model, warehouse.query_batches(f"SELECT * FROM `{source_table}` LIMIT 1"),
                                         version.version)))
    rows = [0]

    def counted() -> Iterator[pa.RecordBatch]:
        for batch in prediction_batches(model, warehouse.query_batches(f"SELECT * FROM `{source_table}`", batch_rows=batch_rows),
                                        version.version):
            rows[0] += batch.num_rows
            yield batch

    warehouse.write_table(staging, pa.RecordBatchReader.from_batches(first.schema, counted()))
    final = warehouse.rename_table(staging, f"{project}.{dataset}.{table}")
    seconds = time.perf_counter() - started
    log.info("batch prediction: %d rows in %.1fs (%.0f rows/s) with %s version %s -> %s", rows[0], seconds,
             rows[0] / max(seconds, 1e-9), model_name, version.version, final)
    return {"rows": rows[0], "seconds": seconds, "model_version": version.version, "destination": final}


def batch_predict(source_table: str, destination_table: str, *, model_name: str, model_alias: str = "champion",
                  backend: str = "local", project: str = "", location: str = "", machine_type: str = "n1-standard-4",
                  replicas: int = 1, local_root: str | None = None, task_id: str = "",
                  gcp_resources: str | None = None, vertex=None) -> dict:
    """Score source_table with the model holding model_alias, on either backend.

    Returns the metadata of the google.BQTable output (projectId, datasetId, tableId where known),
    with `rows` and `seconds` on the local backend and the job's resource name on Vertex.
    """
    from kfkit.cloud_jobs import CloudJobs

    if backend == "local":
        CloudJobs(gcp_resources)  # no Google Cloud job: an empty gcp_resources
        result = predict_local(source_table, destination_table, model_name=model_name, model_alias=model_alias,
                               local_root=local_root)
        project_id, dataset_id, table_id = result["destination"].split(".")
        return {"projectId": project_id, "datasetId": dataset_id, "tableId": table_id, "backend": "local",
                "model_version": result["model_version"], "rows": result["rows"], "seconds": result["seconds"]}
    if backend not in ("vertex", "bigquery"):
        raise ConfigError(f"backend must be local, bigquery or vertex, got {backend!r}")
    from kfkit.adapters.vertex import VertexAdapter, batch_predict_bigquery, output_table_id

    vertex = vertex or VertexAdapter(project, location, jobs=CloudJobs(gcp_resources))
    with vertex.jobs:
        model = vertex.model_by_alias(model_name, model_alias)
        if model is None:
            raise ConfigError(f"no Vertex AI model named {model_name!r} in {project}/{location}; "
                              "run the training pipeline first")
        job = batch_predict_bigquery(vertex, model_resource=model.versioned_resource_name, source_table=source_table,
                                     destination_prefix=destination_table, machine_type=machine_type,
                                     replicas=replicas, display_name=f"kfkit-batch-{model_name}", task_id=task_id)
    table = output_table_id(job)
    meta = {"backend": "vertex", "job": job.resource_name, "table": table}
    if table:
        meta.update(dict(zip(("projectId", "datasetId", "tableId"), table.split("."))), uri=f"bq://{table}")
    return meta
