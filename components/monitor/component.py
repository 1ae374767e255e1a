"""KFP wrapper of the monitor stage."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Metrics, Output

from kfkit.config import runtime_image
from kfkit.interfaces import stamped


@stamped
@dsl.component(base_image=runtime_image(), install_kfp_package=False)
def monitor_endpoint(
    metrics: Output[Metrics],
    anomalies: Output[Artifact],
    report: Output[HTML],
    gcp_resources: dsl.OutputPath(str),
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
    alert_destination: str = "",
    local_root: str = ".kfkit",
    source_table: str = "",
    model_name: str = "penguins",
    attribution_drift_threshold: float = 0.0,
    attribution_baseline_data: str = "",
) -> bool:
    """Compares an endpoint's logged requests with the training data (skew) or an earlier window (drift).

    Args:
        endpoint_name: Endpoint whose requests are monitored.
        backend: `local` (kfkit serve's request logs) or `bigquery` (a Vertex endpoint's
            request-response logging table, read through the BigQuery adapter).
        window_hours: Length of the target window, ending at window_end.
        window_end: End of the window, RFC 3339 (2026-11-22T10:00:00Z); empty: now.
        baseline_window_hours: 0 compares with the training statistics (skew); > 0 compares with the
            window of that length just before the target window (drift).
        baseline_statistics_uri: Training statistics JSON (from validate); empty: the statistics
            saved with the model taking most of the endpoint's traffic (local backend).
        default_threshold: Distance above which a feature is anomalous (Vertex's default: 0.3).
        thresholds: Per-feature thresholds, e.g. {"body_mass_g": 0.2}.
        min_count: Fewest non-missing values of a feature in the window for a verdict; below it the
            feature is `insufficient data`, never drift (default from the false-alarm simulation in
            benchmarks/monitor_guard.py: at most 1% false alarms on in-distribution windows).
        distance_method: `tfdv` (TFDV's distances, as Vertex AI Model Monitoring v1 computes them:
            each side's own 10-bucket histogram, re-bucketed onto the union of boundaries) or
            `baseline_bins` (both sides on the baseline's 20 bins: stable on heavy-tailed features,
            where `tfdv` flags in-distribution windows; see docs/monitoring.md).
        request_logging_table: project.dataset.table of the Vertex request-response log (bigquery backend).
        project: Google Cloud project that runs the query (bigquery backend).
        location: BigQuery location (bigquery backend).
        alert_destination: https:// webhook or pubsub://projects/P/topics/T; empty: an alert file
            under local_root (local backend). Drifted features are also logged at WARNING.
        local_root: Directory of the embedded backend's state (local backend).
        source_table: A table to check instead of the endpoint's requests (batch monitoring: the
            input of a batch prediction), project.dataset.table in the local warehouse or BigQuery;
            compared with the training statistics of model_name's champion (skew).
        model_name: Registered model whose champion's training statistics are the baseline of a
            source_table check.
        attribution_drift_threshold: Feature attribution skew/drift, as Vertex AI Model Monitoring's feature
            attribution objective: > 0 adds an `attribution:<feature>` verdict per feature, drift when the
            feature's attribution score (its share of the mean |sampled Shapley attribution|, in [0, 1]) moved
            by more than this between the baseline and the window (per feature: thresholds
            {"attribution:<feature>": value}); 0 (default): not computed. Each side is a seeded sample of
            200 rows at 10 paths: 2 x 200 x 10 x (features + 1) predictions.
        attribution_baseline_data: Training rows whose attributions are the skew baseline: Parquet shards
            (path or gs:// URI, e.g. the train split) or a warehouse table project.dataset.table. Needed for
            attribution skew; drift (baseline_window_hours > 0) explains the earlier window instead.

    Returns:
        metrics: One distance per feature (JS divergence or L-infinity).
        anomalies: JSON of the verdict (drift, no drift, insufficient data), every feature's status,
            distance and counts, and the window.
        report: HTML with the verdict and overlaid baseline/window histograms per feature, worst first.
        gcp_resources: The BigQuery jobs that read the request logs or the source table (GCPC's
            GcpResources JSON); empty on the local backend.
        Output: drift_detected, True when any feature with enough values is over its threshold (its
            attribution score's too, with attribution_drift_threshold > 0).
    """
    import json
    import logging
    import time

    from kfkit.components.monitor import monitor as mon
    from kfkit.atomic import atomic_file

    from kfkit.cloud_jobs import CloudJobs

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    end = mon.parse_time(window_end, time.time())
    start = end - window_hours * 3600
    jobs = CloudJobs(gcp_resources).cancel_on_sigterm()
    base = None
    read = mon.request_log_reader(backend, endpoint_name=endpoint_name, local_root=local_root, project=project,
                                  location=location, table=request_logging_table, jobs=jobs)
    if source_table:
        target = mon.read_table(source_table, backend=backend, local_root=local_root, project=project,
                                location=location, jobs=jobs)
        statistics = (mon.load_statistics(baseline_statistics_uri) if baseline_statistics_uri
                      else mon.baseline_statistics_for_model(model_name, backend=backend, local_root=local_root,
                                                             project=project))
        result = mon.monitor(target, None, statistics=statistics, thresholds=thresholds,
                             default_threshold=default_threshold, min_count=min_count, method=distance_method,
                             window=(start, end))
        result.mode = "batch skew"
    elif baseline_window_hours > 0:
        target, predictions = read(start, end)
        base, base_predictions = read(start - baseline_window_hours * 3600, start)
        result = mon.monitor(target, predictions, baseline_table=base, baseline_predictions=base_predictions,
                             thresholds=thresholds, default_threshold=default_threshold, min_count=min_count,
                             method=distance_method, window=(start, end))
    else:
        target, predictions = read(start, end)
        statistics = (mon.load_statistics(baseline_statistics_uri) if baseline_statistics_uri
                      else mon.baseline_statistics_for_endpoint(endpoint_name, local_root))
        result = mon.monitor(target, predictions, statistics=statistics, thresholds=thresholds,
                             default_threshold=default_threshold, min_count=min_count, method=distance_method,
                             window=(start, end))
    if attribution_drift_threshold > 0:
        model_dir = mon.monitored_model_dir(endpoint=endpoint_name, model_name=model_name, backend=backend,
                                            source_table=source_table, local_root=local_root, project=project,
                                            location=location)
        if base is not None:
            mon.add_attribution_drift(result, model_dir, base, target, threshold=attribution_drift_threshold,
                                      thresholds=thresholds, baseline_name="earlier window")
        else:
            from kfkit.errors import ConfigError

            if not attribution_baseline_data:
                raise ConfigError("attribution_drift_threshold > 0 against the training data needs "
                                  "attribution_baseline_data (the training rows: Parquet shards or a table); "
                                  "or compare with an earlier window (baseline_window_hours > 0)")
            training = mon.read_attribution_baseline(attribution_baseline_data, backend=backend,
                                                     local_root=local_root, project=project, location=location,
                                                     jobs=jobs)
            mon.add_attribution_drift(result, model_dir, training, target, threshold=attribution_drift_threshold,
                                      thresholds=thresholds)
    metrics.log_metric("requests", result.rows)
    for feature in result.features:
        if feature.distance is not None:
            metrics.log_metric(feature.feature, feature.distance)
    logging.getLogger("kfkit.monitor").info("verdict: %s (%d requests)", result.verdict, result.rows)
    with atomic_file(anomalies.path) as handle:
        json.dump(result.anomalies_json(), handle, indent=1)
    with atomic_file(report.path) as handle:
        handle.write(mon.render_report(result))
    mon.alert(result, endpoint=endpoint_name, destination=alert_destination,
              local_root=local_root if backend == "local" else None)
    return result.drift_detected
