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

from components.monitor.drift import (DEFAULT_THRESHOLD, FeatureDrift, baseline_from_statistics, baseline_from_table,
                                      compare)
from kfkit import report
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


def _prediction_value(prediction: Any) -> Any:
    if isinstance(prediction, dict):
        return prediction.get("classes", prediction.get("value"))
    return prediction


def read_request_logs(log_dir: str | Path, start: float, end: float) -> tuple[pa.Table, pa.Table]:
    """Logged instances and predictions with start <= timestamp < end (a torn last line is skipped)."""
    log_dir = Path(log_dir)
    rows, predictions = [], []
    first_day = dt.datetime.fromtimestamp(start, dt.timezone.utc).date()
    last_day = dt.datetime.fromtimestamp(end, dt.timezone.utc).date()
    for path in sorted(log_dir.glob("*.jsonl")) if log_dir.exists() else []:
        try:
            day = dt.date.fromisoformat(path.stem)
        except ValueError:
            continue
        if not first_day <= day <= last_day:
            continue
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a record cut short by a crash
                if not start <= record["timestamp"] < end:
                    continue
                rows.extend(record["instances"])
                predictions.extend({PREDICTION: _prediction_value(p)} for p in record["predictions"])
    return pa.Table.from_pylist(rows), pa.Table.from_pylist(predictions)


def read_bigquery_logs(adapter, table: str, start: float, end: float) -> tuple[pa.Table, pa.Table]:
    """A Vertex endpoint's request-response logging table over [start, end), through the BigQuery adapter."""
    sql = (f"SELECT request_payload, response_payload FROM `{table}` "
           "WHERE logging_time >= @window_start AND logging_time < @window_end")
    params = {"window_start": dt.datetime.fromtimestamp(start, dt.timezone.utc),
              "window_end": dt.datetime.fromtimestamp(end, dt.timezone.utc)}
    rows, predictions = [], []
    for batch in adapter.query_to_arrow(sql, params):
        for request, response in zip(batch.column("request_payload").to_pylist(),
                                     batch.column("response_payload").to_pylist()):
            for payload in request if isinstance(request, list) else [request]:
                body = json.loads(payload) if isinstance(payload, str) else payload
                rows.extend(body.get("instances", body) if isinstance(body, dict) else body)
            for payload in response if isinstance(response, list) else [response]:
                body = json.loads(payload) if isinstance(payload, str) else payload
                preds = body.get("predictions", []) if isinstance(body, dict) else body
                predictions.extend({PREDICTION: _prediction_value(p)} for p in preds)
    return pa.Table.from_pylist(rows), pa.Table.from_pylist(predictions)


@dataclass
class MonitorResult:
    features: list[FeatureDrift]
    window: tuple[float, float]
    rows: int
    mode: str

    @property
    def anomalous(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.anomalous]

    @property
    def drift_detected(self) -> bool:
        return bool(self.anomalous)

    def anomalies_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "window_start": self.window[0], "window_end": self.window[1], "rows": self.rows,
                "drift_detected": self.drift_detected,
                "anomalies": [{"feature": f.feature, "kind": f.kind, "distance": f.distance, "threshold": f.threshold,
                               "unseen": f.unseen, "nulls": f.nulls} for f in self.anomalous],
                "distances": {f.feature: f.distance for f in self.features}}


def monitor(target: pa.Table, predictions: pa.Table | None, *, statistics: dict[str, Any] | None = None,
            baseline_table: pa.Table | None = None, baseline_predictions: pa.Table | None = None,
            thresholds: dict[str, float] | None = None, default_threshold: float = DEFAULT_THRESHOLD,
            window: tuple[float, float] = (0.0, 0.0)) -> MonitorResult:
    """Skew (statistics = training statistics) or drift (baseline_table = an earlier window)."""
    if target.num_rows == 0:
        raise ConfigError("the target window has no logged requests: nothing to compare (check the window "
                          "and that the endpoint logs requests)")
    if statistics is None and baseline_table is None:
        raise ConfigError("give a baseline: training statistics (skew) or an earlier window (drift)")
    if statistics is not None:
        label = statistics.get("label")
        baseline = baseline_from_statistics(statistics)
        label_profile = baseline.pop(label, None) if label else None
        mode = "skew"
    else:
        if baseline_table.num_rows == 0:
            raise ConfigError("the baseline window has no logged requests")
        baseline, label_profile, mode = baseline_from_table(baseline_table), None, "drift"
    features = [n for n in baseline if n in target.column_names]
    if not features:
        raise ConfigError(f"no feature of the baseline ({', '.join(baseline)}) is in the target data "
                          f"({', '.join(target.column_names)})")
    results = compare(baseline, target, thresholds, default_threshold, features)
    prediction_baseline = None
    if predictions is not None and predictions.num_rows:
        if mode == "skew" and isinstance(label_profile, dict):
            prediction_baseline = {PREDICTION: label_profile}  # predicted classes vs training labels
        elif mode == "drift" and baseline_predictions is not None and baseline_predictions.num_rows:
            prediction_baseline = baseline_from_table(baseline_predictions)
    if prediction_baseline and PREDICTION in prediction_baseline:
        prediction_baseline = {f"{PREDICTION}": prediction_baseline[PREDICTION]}
        results += compare(prediction_baseline, predictions, thresholds, default_threshold, [PREDICTION])
        results.sort(key=lambda r: r.distance, reverse=True)
    return MonitorResult(results, window, target.num_rows, mode)


def render_report(result: MonitorResult, title: str = "kfkit monitoring") -> str:
    start, end = (dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC") for t in result.window)
    n = len(result.anomalous)
    body = [f"<p class='{'bad' if n else 'ok'}'>{n} of {len(result.features)} features over their threshold "
            f"({result.mode}; {result.rows} requests logged from {start} to {end}).</p>",
            "<h2>Distances, worst first</h2>",
            report.table(["feature", "kind", "distance", "threshold", "status", "unseen", "nulls"],
                         [(f.feature, "JS divergence" if f.kind == "numeric" else "L-infinity", f.distance,
                           f.threshold, report.Markup("<span class='bad'>drift</span>" if f.anomalous else "ok"),
                           f.unseen, f.nulls) for f in result.features]),
            "<h2>Baseline and target distributions</h2><div class='grid'>"]
    for f in result.features:
        chart = report.bar_chart(f.labels, [f.baseline, f.target], ["baseline", "target"], width=420,
                                 rotate_labels=True, height=190)
        css = "bad" if f.anomalous else "muted"
        body.append(f"<div class='card'><h3>{report.esc(f.feature)} <span class='{css}'>{f.distance:.3f}</span></h3>"
                    f"{chart}</div>")
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


def baseline_statistics_for_endpoint(endpoint: str, local_root: str | Path | None) -> dict[str, Any]:
    """The training statistics saved with the model that takes most of the endpoint's traffic."""
    from kfkit.endpoints import LocalEndpoints

    state = LocalEndpoints(local_root).load(endpoint)
    if state is None or not state["deployed_models"]:
        raise ConfigError(f"no local endpoint {endpoint!r} with a deployed model to take a baseline from")
    model = max(state["deployed_models"], key=lambda m: m["traffic"])
    path = Path(model["model_dir"]) / STATISTICS_FILE
    if not path.exists():
        raise ConfigError(f"model {model['id']} has no training statistics ({path}); pass baseline_statistics_uri")
    return json.loads(path.read_text())


def load_statistics(uri: str) -> dict[str, Any]:
    path = local_path(uri)
    if path.is_dir():
        path = path / STATISTICS_FILE
    if not path.exists():
        raise ConfigError(f"baseline statistics {uri!r} do not exist")
    return json.loads(path.read_text())
