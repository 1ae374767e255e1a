"""Monitoring logic: read an endpoint's logged requests over a window, compare them with the
training baseline (skew) or an earlier window (drift), report, and alert."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from kfkit.components.monitor import drift
from kfkit.components.monitor.drift import DEFAULT_MIN_COUNT, DEFAULT_THRESHOLD, FeatureDrift
from kfkit import report
from kfkit.serving import request_logs
from kfkit.serving.request_logs import payload_items, prediction_value
from kfkit.atomic import atomic_file
from kfkit.config import local_path
from kfkit.errors import ConfigError

log = logging.getLogger("kfkit.monitor")
STATISTICS_FILE = "kfkit_statistics.json"
PREDICTION = "prediction"


def parse_time(value: str | float | None, default: float) -> float:
    if value in (None, ""):
        return default
    if isinstance(value, (int, float)):
        return float(value)
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"time {value!r} is not ISO 8601 (e.g. 2026-11-22T10:00:00Z)") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.timestamp()


def _instances(record: Any) -> tuple[list, list]:
    """(instances, predictions) of one logged record, whatever shape it has (bad parts dropped)."""
    if not isinstance(record, dict):
        return [], []
    instances = record.get("instances")
    predictions = record.get("predictions")
    instances = [i for i in instances if isinstance(i, dict)] if isinstance(instances, list) else []
    predictions = predictions if isinstance(predictions, list) else []
    return instances, [{PREDICTION: prediction_value(p)} for p in predictions]


def read_request_logs(log_dir: str | Path, start: float, end: float) -> tuple[list[dict], list[dict]]:
    """Logged instances and predictions with start <= timestamp < end (kfkit.serving.request_logs); a record of
    another shape, a value of any type is skipped or kept as it is for the monitor to judge per feature."""
    rows, predictions = [], []
    for record in request_logs.records(log_dir, start, end):
        instances, preds = _instances(record)
        rows.extend(instances)
        predictions.extend(preds)
    return rows, predictions


def request_log_reader(backend: str, *, endpoint_name: str, local_root: str | Path | None = None, project: str = "",
                       location: str = "US", table: str = "", jobs=None):
    """read(start, end) -> (requests, predictions) of the endpoint's logs on `backend`."""
    if backend == "local":
        from kfkit.config import local_root as resolve

        log_dir = resolve(local_root) / "request_logs" / endpoint_name
        return lambda start, end: read_request_logs(log_dir, start, end)
    from kfkit.adapters.bigquery import BigQueryAdapter

    adapter = BigQueryAdapter(project, location, jobs=jobs)
    return lambda start, end: read_bigquery_logs(adapter, table, start, end)


def read_bigquery_logs(adapter, table: str, start: float, end: float) -> tuple[list[dict], list[dict]]:
    """A Vertex endpoint's request-response logging table over [start, end), through the BigQuery adapter."""
    sql = (f"SELECT request_payload, response_payload FROM `{table}` "
           "WHERE logging_time >= @window_start AND logging_time < @window_end")
    params = {"window_start": dt.datetime.fromtimestamp(start, dt.timezone.utc),
              "window_end": dt.datetime.fromtimestamp(end, dt.timezone.utc)}
    rows, predictions = [], []
    for batch in adapter.query_to_arrow(sql, params):
        for request, response in zip(batch.column("request_payload").to_pylist(),
                                     batch.column("response_payload").to_pylist()):
            rows.extend(i for i in payload_items(request, "instances") if isinstance(i, dict))
            predictions.extend({PREDICTION: prediction_value(p)} for p in payload_items(response, "predictions"))
    return rows, predictions


NO_DRIFT, DRIFT_VERDICT, INSUFFICIENT_VERDICT = "no drift", "drift", "insufficient data"


@dataclass
class MonitorResult:
    features: list[FeatureDrift]
    window: tuple[float, float]
    rows: int
    mode: str
    min_count: int = DEFAULT_MIN_COUNT

    @property
    def anomalous(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.anomalous]

    @property
    def drift_detected(self) -> bool:
        return bool(self.anomalous)

    @property
    def verdict(self) -> str:
        """drift, no drift, or insufficient data (nothing had enough values for a verdict)."""
        if self.drift_detected:
            return DRIFT_VERDICT
        if not any(f.status in (drift.OK, drift.DRIFT) for f in self.features):
            return INSUFFICIENT_VERDICT
        return NO_DRIFT

    def anomalies_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "window_start": self.window[0], "window_end": self.window[1], "rows": self.rows,
                "verdict": self.verdict, "drift_detected": self.drift_detected, "min_count": self.min_count,
                "anomalies": [f.to_json() for f in self.anomalous],
                "verdicts": [f.to_json() for f in self.features],
                "distances": {f.feature: f.distance for f in self.features if f.distance is not None}}


def monitor(target, predictions=None, *, statistics: dict[str, Any] | None = None,
            baseline_table=None, baseline_predictions=None,
            thresholds: dict[str, float] | None = None, default_threshold: float = DEFAULT_THRESHOLD,
            min_count: int = DEFAULT_MIN_COUNT, method: str = "tfdv",
            window: tuple[float, float] = (0.0, 0.0)) -> MonitorResult:
    """Skew (statistics = training statistics) or drift (baseline_table = an earlier window).

    `target`, `predictions` and the baselines are Arrow tables or logged instances (lists of dicts).
    An empty or small window is a verdict (insufficient data), not an error.
    """
    if statistics is None and baseline_table is None:
        raise ConfigError("give a baseline: training statistics (skew) or an earlier window (drift)")
    columns = drift.columns_of(target if target is not None else [])
    rows = target.num_rows if isinstance(target, pa.Table) else len(target or [])
    if statistics is not None:
        label = statistics.get("label")
        baseline = drift.baseline_from_statistics(statistics)
        label_profile = baseline.pop(label, None) if label else None
        mode = "skew"
    else:
        baseline = drift.baseline_from_columns(drift.columns_of(baseline_table))
        label_profile, mode = None, "drift"
    results = drift.compare(baseline, columns, thresholds, default_threshold, min_count,
                            method=method) if baseline else []
    prediction_columns = drift.columns_of(predictions if predictions is not None else [])
    if PREDICTION in prediction_columns:
        reference = None
        if mode == "skew" and label_profile is not None:
            reference = label_profile  # predicted values vs the training labels
        elif mode == "drift" and baseline_predictions is not None:
            reference = drift.baseline_from_columns(drift.columns_of(baseline_predictions)).get(PREDICTION)
        if reference is not None:
            results += drift.compare({PREDICTION: reference}, prediction_columns, thresholds, default_threshold,
                                     min_count, features=[PREDICTION], method=method)
    return MonitorResult(drift.worst_first(results), window, rows, mode, min_count)


def _distance_name(kind: str) -> str:
    return {"numeric": "JS divergence", "attribution": "attribution score distance"}.get(kind, "L-infinity")


def render_report(result: MonitorResult, title: str = "kfkit monitoring") -> str:
    start, end = (dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC") for t in result.window)
    n = len(result.anomalous)
    verdict = result.verdict
    css = {DRIFT_VERDICT: "bad", NO_DRIFT: "ok", INSUFFICIENT_VERDICT: "muted"}[verdict]
    detail = {DRIFT_VERDICT: f"{n} of {len(result.features)} features over their threshold",
              NO_DRIFT: "no feature over its threshold",
              INSUFFICIENT_VERDICT: f"no feature had the {result.min_count} values a verdict needs: no verdict, "
                                    "no retraining"}[verdict]
    body = [f"<p class='{css}'><b>{verdict}</b>: {detail} ({result.mode}; {result.rows} requests logged from "
            f"{start} to {end}).</p>",
            "<h2>Features, worst first</h2>",
            report.table(["feature", "distance", "threshold", "status", "values", "missing", "invalid", "unseen",
                          "note"],
                         [(f.feature, "—" if f.distance is None else f"{f.distance:.4f} ({_distance_name(f.kind)})",
                           f.threshold, report.Markup(f"<span class='{'bad' if f.anomalous else 'muted'}'>"
                                                      f"{report.esc(f.status)}</span>"),
                           f.present, f.missing, f.invalid, f.unseen, f.message) for f in result.features]),
            "<h2>Baseline and window distributions</h2><div class='grid'>"]
    for f in result.features:
        if not f.labels:
            continue
        chart = report.bar_chart(f.labels, [f.baseline, f.target], ["baseline", "window"], width=420,
                                 rotate_labels=True, height=190)
        css = "bad" if f.anomalous else "muted"
        distance = "" if f.distance is None else f"{f.distance:.3f}"
        body.append(f"<div class='card'><h3>{report.esc(f.feature)} <span class='{css}'>{distance} "
                    f"{report.esc(f.status)}</span></h3>{chart}</div>")
    body.append("</div>")
    return report.page(title, body)


def alert(result: MonitorResult, *, endpoint: str, destination: str = "", local_root: str | Path | None = None,
          publisher=None) -> str | None:
    """WARNING log with the drifted features; then a webhook POST, a Pub/Sub message, or an alert file."""
    if not result.drift_detected:
        return None
    names = [f.feature for f in result.anomalous]
    log.warning("drift on endpoint %s: %d feature(s) over threshold: %s", endpoint, len(names), ", ".join(names))
    payload = {"endpoint": endpoint, "features": names, **result.anomalies_json()}
    if destination.startswith(("http://", "https://")):
        request = urllib.request.Request(destination, data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
        return destination
    if destination.startswith("pubsub://"):
        from kfkit.adapters.pubsub import publish

        return publish(destination[len("pubsub://"):], payload, publisher=publisher)
    if local_root is not None:
        from kfkit.config import local_root as resolve

        path = resolve(local_root) / "alerts" / f"{endpoint}-{time.strftime('%Y%m%dT%H%M%S')}.json"
        with atomic_file(path) as handle:
            json.dump(payload, handle, indent=1)
        return str(path)
    return None


def _main_deployed_model(endpoint: str, local_root: str | Path | None) -> dict[str, Any]:
    """The deployed model that takes most of a local endpoint's traffic."""
    from kfkit.serving.endpoints import LocalEndpoints

    state = LocalEndpoints(local_root).load(endpoint)
    if state is None or not state["deployed_models"]:
        raise ConfigError(f"no local endpoint {endpoint!r} with a deployed model to take a baseline from")
    return max(state["deployed_models"], key=lambda m: m["traffic"])


def baseline_statistics_for_endpoint(endpoint: str, local_root: str | Path | None) -> dict[str, Any]:
    """The training statistics saved with the model that takes most of the endpoint's traffic."""
    model = _main_deployed_model(endpoint, local_root)
    path = Path(model["model_dir"]) / STATISTICS_FILE
    if not path.exists():
        raise ConfigError(f"model {model['id']} has no training statistics ({path}); pass baseline_statistics_uri")
    return json.loads(path.read_text())


def monitored_model_dir(*, endpoint: str, model_name: str, backend: str = "local", source_table: str = "",
                        local_root: str | Path | None = None, project: str = "", location: str = "") -> str:
    """The model whose attributions are monitored: the one taking most of a local endpoint's traffic;
    otherwise (a Vertex endpoint's logs in BigQuery, a batch input table) model_name's champion."""
    if backend == "local" and not source_table:
        return str(_main_deployed_model(endpoint, local_root)["model_dir"])
    from kfkit.components.register.register import champion_model_dir

    registry_backend = "vertex" if backend in ("vertex", "bigquery") else "local"
    model_dir = champion_model_dir(model_name, registry_backend, str(local_root) if local_root else None, project,
                                   location)
    if model_dir is None:
        raise ConfigError(f"model {model_name!r} has no champion whose attributions to monitor")
    return model_dir


def read_attribution_baseline(uri: str, *, backend: str = "local", local_root: str | Path | None = None,
                              project: str = "", location: str = "US", jobs=None) -> pa.Table:
    """Training rows for attribution skew: Parquet shards (a path or gs:// URI, e.g. the train split
    ingest wrote) or a warehouse table project.dataset.table (local warehouse or BigQuery)."""
    text = uri.strip()
    if text.startswith(("gs://", "/", "./", "file://")) or Path(text).exists():
        import pyarrow.dataset as pads

        path = local_path(text.removeprefix("file://"))
        if not path.exists():
            raise ConfigError(f"attribution_baseline_data {uri!r} does not exist")
        return pads.dataset(str(path), format="parquet").to_table()
    return read_table(text, backend=backend, local_root=local_root, project=project, location=location, jobs=jobs)


def add_attribution_drift(result: MonitorResult, model_dir: str, baseline_rows, window_rows, *, threshold: float,
                          thresholds: dict[str, float] | None = None, seed: int = 0,
                          baseline_name: str = "training data") -> MonitorResult:
    """Adds one `attribution:<feature>` verdict per feature (attribution.py) to the result, worst first."""
    import importlib.util

    from kfkit.components.monitor import attribution
    from kfkit.serving.model_io import LoadedModel

    if importlib.util.find_spec("tensorflow") is None:
        raise ConfigError("attribution drift runs the model, which needs TensorFlow: the kfkit-runtime image the "
                          "monitor step runs on has none; run the step on the kfkit-trainer image, or leave "
                          "attribution_drift_threshold at 0")
    verdicts = attribution.attribution_drift(LoadedModel(model_dir), baseline_rows, window_rows, threshold,
                                             thresholds, result.min_count, seed, baseline_name=baseline_name)
    result.features = drift.worst_first(result.features + verdicts)
    return result


def baseline_statistics_for_model(model_name: str, *, backend: str = "local", local_root: str | Path | None = None,
                                  project: str = "", location: str = "") -> dict[str, Any]:
    """The training statistics saved with the registry's champion of `model_name`."""
    from kfkit.components.register.register import champion_model_dir

    registry_backend = "vertex" if backend in ("vertex", "bigquery") else "local"
    model_dir = champion_model_dir(model_name, registry_backend, str(local_root) if local_root else None, project,
                                   location)
    if model_dir is None:
        raise ConfigError(f"model {model_name!r} has no champion to take a baseline from; pass baseline_statistics_uri")
    return load_statistics(model_dir)


def read_table(source_table: str, *, backend: str = "local", local_root: str | Path | None = None, project: str = "",
               location: str = "US", adapter=None, jobs=None) -> pa.Table:
    """Every row of a warehouse table (a batch prediction's input), for a skew check."""
    query = f"SELECT * FROM `{source_table.strip('`')}`"
    if backend == "local":
        from kfkit.warehouse.local import LocalWarehouse

        warehouse = LocalWarehouse(local_root)
        warehouse.ensure_sample_data()
        batches = list(warehouse.query_batches(query))
        return pa.Table.from_batches(batches) if batches else pa.table({})
    from kfkit.adapters.bigquery import BigQueryAdapter

    adapter = adapter or BigQueryAdapter(project, location, jobs=jobs)
    batches = adapter.query_to_arrow(query)
    return pa.Table.from_batches(batches) if batches else pa.table({})


def load_statistics(uri: str) -> dict[str, Any]:
    path = local_path(uri)
    if path.is_dir():
        path = path / STATISTICS_FILE
    if not path.exists():
        raise ConfigError(f"baseline statistics {uri!r} do not exist")
    return json.loads(path.read_text())
