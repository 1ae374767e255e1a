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
    from kfkit.model_io import LoadedModel
    from kfkit.warehouse import LocalWarehouse, split_table_name

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
