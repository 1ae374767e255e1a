"""Batch prediction pipeline: score a warehouse table with the champion model.

Locally it reads the DuckDB warehouse and the MLflow registry; with backend=bigquery it runs a
Vertex AI batch prediction job from BigQuery to BigQuery.
"""

from kfp import dsl

from kfkit.components.batch_predict.component import batch_predict
from kfkit.components.monitor.component import monitor_endpoint
from kfkit.pipelines.retries import cloud_step


@dsl.pipeline(name="kfkit-batch-prediction", description="Score a table with the registered champion model.")
def batch_prediction_pipeline(
    source_table: str = "bigquery-public-data.ml_datasets.penguins",
    destination_table: str = "predictions.penguins",
    model_name: str = "penguins",
    model_alias: str = "champion",
    backend: str = "local",
    project: str = "",
    location: str = "us-central1",
    machine_type: str = "n1-standard-4",
    local_root: str = ".kfkit",
    monitor_input: bool = False,
    default_threshold: float = 0.3,
    alert_destination: str = "",
):
    """Scores a warehouse table with the registered model holding an alias.

    Args:
        source_table: project.dataset.table to score.
        destination_table: Where the predictions go (local: a table; Vertex: a BigQuery dataset).
        model_name: Registered model name.
        model_alias: Alias of the version to use.
        backend: `local` (DuckDB warehouse, MLflow) or `bigquery` (Vertex AI batch prediction).
        project: Google Cloud project (bigquery backend).
        location: Vertex AI region (bigquery backend).
        machine_type: Machine type of the batch prediction job (bigquery backend).
        local_root: Directory of the embedded backend's state.
        monitor_input: Also compare the input table with the model's training statistics (skew, as
            Vertex offers for batch prediction): a monitor step with its report and alert.
        default_threshold: Distance over which a feature of the input counts as skewed.
        alert_destination: https:// webhook or pubsub:// topic for a skew alert; empty: alert file.
    """
    with dsl.If(monitor_input == True, name="monitor-input"):  # noqa: E712 (KFP condition)
        check = monitor_endpoint(source_table=source_table, model_name=model_name, backend=backend,
                                 project=project, default_threshold=default_threshold,
                                 alert_destination=alert_destination, local_root=local_root,
                                 endpoint_name=model_name).set_display_name("monitor-input")
        check.set_caching_options(False)
    score = batch_predict(source_table=source_table, destination_table=destination_table, model_name=model_name,
                          model_alias=model_alias, backend=backend, project=project, location=location,
                          machine_type=machine_type, local_root=local_root,
                          task_id=dsl.PIPELINE_TASK_ID_PLACEHOLDER).set_display_name("batch-predict")
    score.set_caching_options(False)
    cloud_step(score)
