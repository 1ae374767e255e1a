"""Monitoring pipeline: read the endpoint's window -> monitor -> [drift] retrain.

Schedule it on Vertex with `kfkit schedule monitoring --cron ...`; run it here with
`kfkit run monitoring --local`. When drift is found, the training pipeline runs as a sub-pipeline
with the champion's own recipe (every parameter of the run that trained it, recorded at
registration), this run's environment and `retrain_overrides` on top: its evaluate gate still
decides whether the new model replaces the champion.
"""

from kfp import dsl

from kfkit.components.monitor.component import monitor_endpoint
from kfkit.config import trainer_image
from kfkit.components.recipe.component import champion_recipe
from kfkit.pipelines.training import training_pipeline


@dsl.pipeline(name="kfkit-monitoring", description="Skew and drift of an endpoint's traffic; retrain on drift.")
def monitoring_pipeline(
    endpoint_name: str = "penguins",
    backend: str = "local",
    window_hours: float = 24.0,
    window_end: str = "",
    baseline_window_hours: float = 0.0,
    baseline_statistics_uri: str = "",
    default_threshold: float = 0.3,
    thresholds: dict = {},
    min_count: int = 100,
    distance_method: str = "tfdv",
    request_logging_table: str = "",
    project: str = "",
    location: str = "US",
    region: str = "us-central1",
    alert_destination: str = "",
    local_root: str = ".kfkit",
    retrain: bool = True,
    model_name: str = "penguins",
    retrain_overrides: dict = {},
    attribution_drift_threshold: float = 0.0,
    attribution_baseline_data: str = "",
):
    """Monitors an endpoint's window against the training data (skew) or an earlier window (drift).

    Args:
        endpoint_name: Endpoint whose logged requests are monitored (and the retrain deploys to).
        backend: `local` (kfkit serve's request logs, MLflow) or `bigquery` (Vertex request-response
            logging in BigQuery, Vertex AI Model Registry).
        window_hours: Length of the window, ending at window_end.
        window_end: End of the window, RFC 3339 (2026-11-22T10:00:00Z); empty: now.
        baseline_window_hours: 0: skew against the training statistics; > 0: drift against the
            window of that length before this one.
        baseline_statistics_uri: Training statistics; empty: those saved with the serving model.
        default_threshold: Distance over which a feature drifts (Vertex's default 0.3).
        thresholds: Per-feature thresholds.
        min_count: Fewest values of a feature for a verdict; below: insufficient data, no retrain.
        distance_method: `tfdv` (Vertex AI Model Monitoring v1's distances) or `baseline_bins`.
        request_logging_table: Vertex request-response logging table (bigquery backend).
        project: Google Cloud project (bigquery backend).
        location: BigQuery location.
        region: Vertex AI region of the registry and the retrain.
        alert_destination: https:// webhook or pubsub://projects/P/topics/T; empty: an alert file.
        local_root: Directory of the embedded backend's state.
        retrain: Retrain when drift is found.
        model_name: Registered model whose champion's recipe the retrain reuses.
        retrain_overrides: Training parameters to change in the retrain, e.g. {"epochs": 50}.
        attribution_drift_threshold: > 0: also judge each feature's attribution score (its share of the
            mean |sampled Shapley attribution|), drift over this distance; 0: off.
        attribution_baseline_data: Training rows (Parquet path/URI or project.dataset.table) whose attributions
            are the skew baseline; drift mode explains the earlier window instead.
    """
    monitor = monitor_endpoint(
        endpoint_name=endpoint_name, backend=backend, window_hours=window_hours, window_end=window_end,
        baseline_window_hours=baseline_window_hours, baseline_statistics_uri=baseline_statistics_uri,
        default_threshold=default_threshold, thresholds=thresholds, min_count=min_count,
        distance_method=distance_method, request_logging_table=request_logging_table,
        project=project, location=location, alert_destination=alert_destination, local_root=local_root,
        model_name=model_name, attribution_drift_threshold=attribution_drift_threshold,
        attribution_baseline_data=attribution_baseline_data,
    ).set_display_name("monitor")
    monitor.set_caching_options(False)  # new requests arrive between runs
    # attribution drift runs the model: the step needs TensorFlow, which the trainer image has (the
    # retrain below runs on it anyway); the monitor component's own spec keeps the lighter runtime image
    monitor.set_container_image(trainer_image())

    with dsl.If(monitor.outputs["Output"] == True, name="drift-detected"):  # noqa: E712 (KFP condition)
        with dsl.If(retrain == True, name="retrain-enabled"):  # noqa: E712
            recipe = champion_recipe(model_name=model_name, backend=backend, project=project, location=location,
                                     region=region, local_root=local_root, endpoint_name=endpoint_name,
                                     overrides=retrain_overrides).set_display_name("champion-recipe")
            recipe.set_caching_options(False)  # the champion changes between runs
            training_pipeline(**{name: recipe.outputs[name] for name in recipe.component_spec.outputs}
                              ).set_display_name("retrain")
