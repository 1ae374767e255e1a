"""Reporting a trial's metric the way Vertex AI hyperparameter tuning reads it.

The format is that of Google's `cloudml-hypertune` package (hypertune/hypertune.py,
HyperTune.report_hyperparameter_tuning_metric), which Vertex's documentation tells custom
containers to use: the file named by $CLOUD_ML_HP_METRIC_FILE (default
/tmp/hypertune/output.metrics) is rewritten on every report with the last 100 reports, one JSON
object per line (keys sorted): timestamp, trial ($CLOUD_ML_TRIAL_ID), the metric tag with the value
as a string, global_step as a string, checkpoint_path. The package is an sdist only (no wheel to
lock with hashes), so kfkit writes the same lines itself; tests/test_tune.py compares them with the
package's own output.
"""

from __future__ import annotations

import collections
import json
import os
import time

DEFAULT_METRIC_PATH = "/tmp/hypertune/output.metrics"
KEPT = 100


class MetricReporter:
    def __init__(self):
        self.path = os.environ.get("CLOUD_ML_HP_METRIC_FILE", DEFAULT_METRIC_PATH)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.trial = str(os.environ.get("CLOUD_ML_TRIAL_ID", 0))
        self.reports: collections.deque = collections.deque(maxlen=KEPT)

    def report(self, tag: str, value: float, step: int | None = None) -> None:
        self.reports.append({"timestamp": time.time(), "trial": self.trial, tag: str(float(value)),
                             "global_step": str(int(step) if step else 0), "checkpoint_path": ""})
        with open(self.path, "w") as handle:
            for report in self.reports:
                handle.write(json.dumps(report, sort_keys=True) + "\n")
