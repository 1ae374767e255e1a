"""What each deployed version of a local endpoint served: read from kfkit's server request logs.

The server writes one JSON line per request (kfkit.server.RequestLog): the deployed model that
took it, its status, its latency, and for an answered request the instances and predictions. A
line of another shape, or cut short by a crash, is skipped: the logs are input, not trusted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kfkit.components.canary.analysis import Served


def prediction_value(prediction: Any) -> Any:
    if isinstance(prediction, dict):
        return prediction.get("classes", prediction.get("value"))
    return prediction


def read_served(log_dir: str | Path, start: float, end: float, *, labels: dict[str, Any] | None = None,
                request_key: str = "", buckets: int = 20) -> tuple[dict[str, Served], dict[str, list[list[float]]]]:
    """({deployed model id: Served}, {deployed model id: [requests, errors, p99 ms] per time bucket})
    over start <= timestamp < end."""
    served: dict[str, Served] = {}
    timeline: dict[str, list[list[Any]]] = {}
    width = max(end - start, 1e-9) / buckets
    for path in sorted(Path(log_dir).glob("*.jsonl")) if Path(log_dir).exists() else []:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except (json.JSONDecodeError, RecursionError, ValueError):
                    continue
                if not isinstance(record, dict):
                    continue
                stamp, deployed = record.get("timestamp"), record.get("deployed_model_id")
                if not isinstance(stamp, (int, float)) or isinstance(stamp, bool) or not start <= stamp < end:
                    continue
                if not isinstance(deployed, str):
                    continue
                side = served.setdefault(deployed, Served(deployed))
                status = record.get("status", 200)
                failed = not (isinstance(status, int) and 200 <= status < 300)
                side.requests += 1
                side.errors += failed
                latency = record.get("latency_ms")
                if isinstance(latency, (int, float)) and not isinstance(latency, bool) and latency >= 0:
                    side.latencies_ms.append(float(latency))
                slot = timeline.setdefault(deployed, [[0, 0, []] for _ in range(buckets)])[
                    min(int((stamp - start) / width), buckets - 1)]
                slot[0] += 1
                slot[1] += failed
                if isinstance(latency, (int, float)) and not isinstance(latency, bool):
                    slot[2].append(float(latency))
                if failed:
                    continue
                instances, predictions = record.get("instances"), record.get("predictions")
                if not isinstance(predictions, list):
                    continue
                values = [prediction_value(p) for p in predictions]
                side.predictions.extend(values)
                if labels and request_key and isinstance(instances, list) and len(instances) == len(values):
                    for instance, value in zip(instances, values):
                        key = instance.get(request_key) if isinstance(instance, dict) else None
                        if key is not None and str(key) in labels:
                            side.labelled.append((value, labels[str(key)]))
    import numpy as np

    series = {k: [[n, e, float(np.percentile(ms, 99)) if ms else 0.0] for n, e, ms in slots]
              for k, slots in timeline.items()}
    return served, series
