"""What each deployed version of a local endpoint served: read from kfkit's server request logs.

The server writes one JSON line per request (kfkit.serving.server.RequestLog): the deployed model that
took it, its status, its latency, and for an answered request the instances and predictions. A
line of another shape, or cut short by a crash, is skipped: the logs are input, not trusted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kfkit.components.canary.analysis import Served
from kfkit.serving.request_logs import prediction_value, records


def add_answers(side: Served, instances: Any, predictions: list, labels: dict[str, Any] | None,
                request_key: str) -> None:
    """One answered request's predictions into `side`, each paired with its label when the instance's
    request_key has one (instances and predictions must line up one to one to be joined)."""
    values = [prediction_value(p) for p in predictions]
    side.predictions.extend(values)
    if labels and request_key and isinstance(instances, list) and len(instances) == len(values):
        for instance, value in zip(instances, values):
            key = instance.get(request_key) if isinstance(instance, dict) else None
            if key is not None and str(key) in labels:
                side.labelled.append((value, labels[str(key)]))


def read_served(log_dir: str | Path, start: float, end: float, *, labels: dict[str, Any] | None = None,
                request_key: str = "", buckets: int = 20) -> tuple[dict[str, Served], dict[str, list[list[float]]]]:
    """({deployed model id: Served}, {deployed model id: [requests, errors, p99 ms] per time bucket})
    over start <= timestamp < end."""
    served: dict[str, Served] = {}
    timeline: dict[str, list[list[Any]]] = {}
    width = max(end - start, 1e-9) / buckets
    for record in records(log_dir, start, end):
        stamp, deployed = record["timestamp"], record.get("deployed_model_id")
        if not isinstance(deployed, str):
            continue
        side = served.setdefault(deployed, Served(deployed))
        status = record.get("status", 200)
        failed = not (isinstance(status, int) and 200 <= status < 300)
        side.requests += 1
        side.errors += failed
        latency = record.get("latency_ms")
        measured = isinstance(latency, (int, float)) and not isinstance(latency, bool) and latency >= 0
        if measured:
            side.latencies_ms.append(float(latency))
            side.latency_times.append(float(stamp))
        slot = timeline.setdefault(deployed, [[0, 0, []] for _ in range(buckets)])[
            min(int((stamp - start) / width), buckets - 1)]
        slot[0] += 1
        slot[1] += failed
        if measured:
            slot[2].append(float(latency))
        instances, predictions = record.get("instances"), record.get("predictions")
        if failed or not isinstance(predictions, list):
            continue
        add_answers(side, instances, predictions, labels, request_key)
    series = {k: [[n, e, float(np.percentile(ms, 99)) if ms else 0.0] for n, e, ms in slots]
              for k, slots in timeline.items()}
    return served, series
