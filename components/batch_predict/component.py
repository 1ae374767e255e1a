"""KFP wrapper of the batch prediction stage."""

from google_cloud_pipeline_components.types.artifact_types import BQTable
from kfp import dsl
from kfp.dsl import Metrics, Output

from kfkit.config import runtime_image
from kfkit.interfaces import stamped


@stamped
@dsl.component(base_image=runtime_image(), install_kfp_package=False)
def batch_predict(
    source_table: str,
    destination_table: str,
    predictions: Output[BQTable],
    metrics: Output[Metrics],
    gcp_resources: dsl.OutputPath(str),
    model_name: str = "penguins",
    model_alias: str = "champion",
    backend: str = "local",
    project: str = "",
    location: str = "us-central1",
    machine_type: str = "n1-standard-4",
    replicas: int = 1,
    local_root: str = ".kfkit",
    task_id: str = "",
):
    """Predicts every row of a table with the registered model holding an alias; writes a table.

    Args:
        source_table: project.dataset.table to score (local warehouse or BigQuery).
        destination_table: Local: project.dataset.table written with every source column,
            `predicted_<label>`, `scores` and `model_version`. Vertex: the BigQuery dataset
            (project.dataset) under which the batch prediction job creates its table.
        model_name: Registered model name.
        model_alias: Alias of the version to use (`champion` by default).
        backend: `local` (MLflow registry + DuckDB warehouse) or `vertex`/`bigquery` (Vertex AI batch prediction).
        project: Google Cloud project (vertex).
        location: Vertex AI region (vertex).
        machine_type: Machine type of the batch prediction job (vertex).
        replicas: Replicas of the batch prediction job (vertex).
        local_root: Directory of the embedded backend's state (local backend).
        task_id: Pipeline task id; a retried task waits for the job its first attempt started
            (found by label) instead of starting a second one.

    Returns:
        predictions: The table of predictions (google.BQTable).
        metrics: Rows scored, seconds and rows/s (local backend).
        gcp_resources: The batch prediction job (GCPC's GcpResources JSON); cancelling the run
            cancels it. Empty on the local backend.
    """
    import logging

    from kfkit.components.batch_predict.batch_predict import batch_predict as predict

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    meta = predict(source_table, destination_table, model_name=model_name, model_alias=model_alias, backend=backend,
                   project=project, location=location, machine_type=machine_type, replicas=replicas,
                   local_root=local_root, task_id=task_id, gcp_resources=gcp_resources)
    if "uri" in meta:
        predictions.uri = meta.pop("uri")
    rows, seconds = meta.pop("rows", None), meta.pop("seconds", None)
    predictions.metadata.update(meta)
    if rows is not None:
        metrics.log_metric("rows", rows)
        metrics.log_metric("rows_per_second", rows / max(seconds, 1e-9))
