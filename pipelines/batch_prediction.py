"""Batch prediction pipeline: score a warehouse table with the champion model.

Locally it reads the DuckDB warehouse and the MLflow registry; with backend=bigquery it runs a
Vertex AI batch prediction job from BigQuery to BigQuery.
"""

from kfp import dsl

from components.batch_predict.component import batch_predict


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
):
    score = batch_predict(source_table=source_table, destination_table=destination_table, model_name=model_name,
                          model_alias=model_alias, backend=backend, project=project, location=location,
                          machine_type=machine_type, local_root=local_root).set_display_name("batch-predict")
    score.set_caching_options(False)
