"""Monitoring pipeline: read the endpoint's window -> monitor -> [drift] retrain.

Schedule it on Vertex with `kfkit schedule monitoring --cron ...`; run it here with
`kfkit run monitoring --local`. When drift is found, the training pipeline runs as a sub-pipeline
with the same data parameters: its evaluate gate still decides whether the new model replaces
the champion.
"""

from kfp import dsl

from components.monitor.component import monitor_endpoint
from pipelines.training import PENGUINS_QUERY, training_pipeline


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
    request_logging_table: str = "",
    project: str = "",
    location: str = "US",
    alert_destination: str = "",
    local_root: str = ".kfkit",
    retrain: bool = True,
    query: str = PENGUINS_QUERY,
    label_column: str = "species",
    model_name: str = "penguins",
):
    monitor = monitor_endpoint(
        endpoint_name=endpoint_name, backend=backend, window_hours=window_hours, window_end=window_end,
        baseline_window_hours=baseline_window_hours, baseline_statistics_uri=baseline_statistics_uri,
        default_threshold=default_threshold, thresholds=thresholds, request_logging_table=request_logging_table,
        project=project, location=location, alert_destination=alert_destination, local_root=local_root,
    ).set_display_name("monitor")
    monitor.set_caching_options(False)  # new requests arrive between runs

    with dsl.If(monitor.outputs["Output"] == True, name="drift-detected"):  # noqa: E712 (KFP condition)
        with dsl.If(retrain == True, name="retrain-enabled"):  # noqa: E712
            training_pipeline(query=query, label_column=label_column, backend=backend, project=project,
                              location=location, local_root=local_root, model_name=model_name,
                              endpoint_name=endpoint_name).set_display_name("retrain")
