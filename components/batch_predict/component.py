"""KFP wrapper of the batch prediction stage."""

from google_cloud_pipeline_components.types.artifact_types import BQTable
from kfp import dsl
from kfp.dsl import Metrics, Output

from kfkit.config import runtime_image


@dsl.component(base_image=runtime_image(), install_kfp_package=False)
def batch_predict(
    source_table: str,
    destination_table: str,
    predictions: Output[BQTable],
    metrics: Output[Metrics],
    model_name: str = "penguins",
    model_alias: str = "champion",
    backend: str = "local",
    project: str = "",
    location: str = "us-central1",
    machine_type: str = "n1-standard-4",
    replicas: int = 1,
    local_root: str = ".kfkit",
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

    Returns:
        predictions: The table of predictions (google.BQTable).
        metrics: Rows scored, seconds and rows/s (local backend).
    """
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if backend == "local":
        from components.batch_predict.batch_predict import predict_local

        result = predict_local(source_table, destination_table, model_name=model_name, model_alias=model_alias,
                               local_root=local_root)
        project_id, dataset_id, table_id = result["destination"].split(".")
        predictions.metadata.update({"projectId": project_id, "datasetId": dataset_id, "tableId": table_id,
                                     "backend": "local", "model_version": result["model_version"]})
        metrics.log_metric("rows", result["rows"])
        metrics.log_metric("rows_per_second", result["rows"] / max(result["seconds"], 1e-9))
        return
    from kfkit.adapters.vertex import VertexAdapter, batch_predict_bigquery

    vertex = VertexAdapter(project, location)
    model = vertex.model_by_alias(model_name, model_alias)
    job = batch_predict_bigquery(vertex, model_resource=model.versioned_resource_name, source_table=source_table,
                                 destination_prefix=destination_table, machine_type=machine_type, replicas=replicas,
                                 display_name=f"kfkit-batch-{model_name}")
    table = job.output_info.bigquery_output_table if job.output_info else ""
    predictions.uri = f"bq://{table}" if table else ""
    predictions.metadata.update({"job": job.resource_name, "table": table})
