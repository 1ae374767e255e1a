"""KFP wrapper of the canary analysis stage."""

from typing import NamedTuple

from google_cloud_pipeline_components.types.artifact_types import VertexEndpoint
from kfp import dsl
from kfp.dsl import HTML, Input, Metrics, Output

from kfkit.config import runtime_image
from kfkit.interfaces import stamped


@stamped
@dsl.component(base_image=runtime_image(), install_kfp_package=False)
def analyze_canary(
    endpoint: Input[VertexEndpoint],
    metrics: Output[Metrics],
    report: Output[HTML],
    backend: str = "local",
    endpoint_backend: str = "",
    project: str = "",
    location: str = "us-central1",
    request_logging_table: str = "",
    bigquery_location: str = "US",
    namespace: str = "",
    prometheus_url: str = "",
    request_logger_url: str = "",
    local_root: str = ".kfkit",
    window_seconds: float = 600.0,
    max_extensions: int = 0,
    on_inconclusive: str = "keep",
    min_requests: int = 100,
    max_error_rate_increase: float = 0.0,
    max_latency_ratio: float = 1.2,
    max_prediction_distance: float = 0.05,
    max_accuracy_drop: float = 0.02,
    max_rmse_ratio: float = 1.1,
    max_error_rate_ratio: float = 1.1,
    false_rollback_rate: float = 0.01,
    warmup_requests: int = 20,
    labels_table: str = "",
    request_key: str = "",
    label_column: str = "",
) -> NamedTuple("Outputs", [("verdict", str)]):
    """Watches an endpoint's canary for a window, compares it with the version it shares traffic with, and acts.

    Args:
        endpoint: The endpoint deploy wrote (its metadata names the endpoint); its newest version with
            traffic is the canary, the others with traffic its baseline.
        backend: As deploy's: `local` (kfkit's server and its request logs) or `vertex`/`bigquery`
            (a Vertex AI endpoint: Cloud Monitoring's counts and latencies, predictions from its
            request-response logging table, the split through the Endpoint API).
        endpoint_backend: As deploy's: overrides backend for the endpoint; `kserve`: a KServe
            InferenceService (counts and latencies from Knative's metrics in Prometheus, predictions
            from the log sink, KServe's own promotion and rollback).
        project: Google Cloud project of the endpoint, its metrics and its logging table (vertex).
        location: Vertex AI region of the endpoint (vertex).
        request_logging_table: bq://project.dataset.table the endpoint logs requests to (vertex).
        bigquery_location: BigQuery location of request_logging_table and labels_table (vertex).
        namespace: Kubernetes namespace of the InferenceService (kserve; empty: the step's own).
        prometheus_url: http(s):// address of the cluster's Prometheus scraping Knative's queue-proxy (kserve).
        request_logger_url: http(s):// address of the `kfkit log-sink` deploy pointed KServe's logger at (kserve).
        local_root: Directory of the embedded backend's state.
        window_seconds: How long to watch before judging.
        max_extensions: Times the window is extended while either side has fewer than min_requests.
        on_inconclusive: `keep` the split for a person, or `rollback`, when traffic stays too little.
        min_requests: Fewest requests on each side to judge at all.
        max_error_rate_increase: Absolute slack on the allowed error rate (allowed: max_error_rate_ratio
            x the baseline's + this); the canary fails only when significantly above it.
        max_latency_ratio: Allowed slowdown as a factor: fails when the canary's latencies divided by it
            are still significantly slower (Mann-Whitney U), or its share slower than this x the
            baseline's p99 is significantly larger.
        max_prediction_distance: Allowed distance between the two sides' predictions (the monitor's
            metric: L-infinity for classes, Jensen-Shannon for numbers) beyond its sampling noise.
        max_accuracy_drop: Allowed accuracy drop (with labels); fails when significantly larger (bootstrap).
        max_rmse_ratio: Allowed RMSE ratio (with labels); fails when significantly larger (bootstrap).
        max_error_rate_ratio: Allowed error rate as a multiple of the baseline's.
        false_rollback_rate: How often a canary as good as its baseline may be rolled back, all tests
            together (each criterion's test runs at this divided by their number).
        warmup_requests: Each side's first requests left out of the latency test (the cold start).
        labels_table: Table of ground truth, in the local warehouse or BigQuery (optional).
        request_key: Instance field, and labels_table column, joining requests to their labels.
        label_column: labels_table column holding the label.

    Returns:
        metrics: Each side's requests, error rate, p50/p99 latency and each criterion's value.
        report: The two sides side by side over the window, the criteria and the verdict.
        verdict: `promote`, `rollback` or `inconclusive`, for the pipeline to branch on.
    """
    import collections
    import logging

    from kfkit.components.canary.analysis import Thresholds
    from kfkit.components.canary.canary import analyze_canary as run
    from kfkit.components.canary.report import render

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    result = run(dict(endpoint.metadata).get("endpoint", ""), backend=backend, endpoint_backend=endpoint_backend,
                 project=project, location=location, request_logging_table=request_logging_table,
                 bigquery_location=bigquery_location, namespace=namespace, prometheus_url=prometheus_url,
                 request_logger_url=request_logger_url, local_root=local_root,
                 window_seconds=window_seconds, max_extensions=max_extensions, on_inconclusive=on_inconclusive,
                 thresholds=Thresholds(min_requests=min_requests, max_error_rate_increase=max_error_rate_increase,
                                       max_latency_ratio=max_latency_ratio,
                                       max_prediction_distance=max_prediction_distance,
                                       max_accuracy_drop=max_accuracy_drop, max_rmse_ratio=max_rmse_ratio,
                                       max_error_rate_ratio=max_error_rate_ratio,
                                       false_rollback_rate=false_rollback_rate, warmup_requests=warmup_requests),
                 labels_table=labels_table, request_key=request_key, label_column=label_column)
    for name, figures in (("canary", result.analysis.canary), ("baseline", result.analysis.baseline)):
        for key, value in figures.items():
            if value is not None:
                metrics.log_metric(f"{name}_{key}", float(value))
    for criterion in result.analysis.criteria:
        if criterion.canary is not None:
            metrics.log_metric(f"criterion_{criterion.name}", float(criterion.canary))
        if criterion.p_value is not None:
            metrics.log_metric(f"criterion_{criterion.name}_p_value", float(criterion.p_value))
    metrics.metadata.update(criteria={c.name: c.status for c in result.analysis.criteria})
    metrics.metadata.update(verdict=result.verdict, action=result.action)
    with open(report.path, "w") as handle:
        handle.write(render(result))
    return collections.namedtuple("Outputs", ["verdict"])(result.verdict)
