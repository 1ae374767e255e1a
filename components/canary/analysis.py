"""Canary analysis: does the canary serve at least as well as the version it would replace?

Plain logic over what each version served in the window (kfkit.components.canary.traffic reads it).
Criteria, each with its own threshold, all compared canary against baseline (the version or versions
the canary shares the endpoint with):
- error rate (non-2xx answers): the canary's may exceed the baseline's by at most `max_error_rate_increase`;
- latency: the canary's p99 at most `max_latency_ratio` times the baseline's (p50 reported beside it);
- predictions: the distance between the two versions' prediction distributions, with the monitor's
  metric (TFDV's L-infinity distance for classes, Jensen-Shannon divergence for numbers), at most
  `max_prediction_distance`;
- with ground truth: accuracy may drop by at most `max_accuracy_drop` (classes), RMSE may grow by at
  most the factor `max_rmse_ratio` (numbers).
Too few requests on either side (`min_requests`) gives `inconclusive`, never a guess.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from kfkit.errors import ConfigError

PROMOTE, ROLLBACK, INCONCLUSIVE = "promote", "rollback", "inconclusive"
CANARY_TAG = "kfkit.canary"  # the registry tag (label on Vertex AI) each verdict writes on the canary version


@dataclass
class Thresholds:
    min_requests: int = 100
    max_error_rate_increase: float = 0.01
    max_latency_ratio: float = 1.5
    max_prediction_distance: float = 0.3
    max_accuracy_drop: float = 0.02
    max_rmse_ratio: float = 1.1

    def check(self) -> "Thresholds":
        if self.min_requests < 1:
            raise ConfigError(f"min_requests must be >= 1, got {self.min_requests}")
        for name in ("max_error_rate_increase", "max_latency_ratio", "max_prediction_distance", "max_accuracy_drop",
                     "max_rmse_ratio"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
        return self


@dataclass
class Served:
    """What one side served in the window: every request, and the answered ones' predictions."""
    name: str
    requests: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    predictions: list[Any] = field(default_factory=list)
    # (prediction, truth) for the answered requests whose key has a label
    labelled: list[tuple[Any, Any]] = field(default_factory=list)
    # {q: ms} computed by the service that served (Vertex: Cloud Monitoring's own percentiles over
    # every request), used instead of latencies_ms, which such a service does not hand out
    latency_percentiles: dict[int, float] = field(default_factory=dict)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def latency(self, q: int) -> float | None:
        if q in self.latency_percentiles:
            return float(self.latency_percentiles[q])
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else None

    def figures(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors, "error_rate": self.error_rate,
                "latency_p50_ms": self.latency(50), "latency_p99_ms": self.latency(99),
                "labelled": len(self.labelled)}


@dataclass
class Criterion:
    name: str
    canary: float | None
    baseline: float | None
    limit: float
    passed: bool
    detail: str


@dataclass
class Analysis:
    verdict: str
    reason: str
    criteria: list[Criterion]
    canary: dict[str, Any]
    baseline: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "reason": self.reason, "criteria": [asdict(c) for c in self.criteria],
                "canary": self.canary, "baseline": self.baseline}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def prediction_distance(canary: list[Any], baseline: list[Any]) -> tuple[float, str]:
    """The monitor's distance between two prediction samples: (distance, metric name)."""
    from kfkit.components.monitor import drift

    numeric = sum(_is_number(v) for v in baseline) > len(baseline) / 2
    kind = "numeric" if numeric else "categorical"
    result = drift.compare_feature("prediction", drift.profile(baseline, kind), drift.profile(canary, kind),
                                   threshold=math.inf, min_count=1)
    return float(result.distance or 0.0), ("Jensen-Shannon divergence" if numeric else "L-infinity distance")


def _ground_truth(canary: Served, baseline: Served, t: Thresholds) -> Criterion | None:
    if min(len(canary.labelled), len(baseline.labelled)) < t.min_requests:
        return None
    numeric = all(_is_number(p) and _is_number(y) for p, y in baseline.labelled + canary.labelled)
    if numeric:
        def rmse(pairs):
            return math.sqrt(sum((float(p) - float(y)) ** 2 for p, y in pairs) / len(pairs))
        c, b = rmse(canary.labelled), rmse(baseline.labelled)
        limit = b * t.max_rmse_ratio
        return Criterion("rmse", c, b, limit, c <= limit,
                         f"canary RMSE {c:.4g} vs {b:.4g} (at most x{t.max_rmse_ratio:g}: {limit:.4g})")

    def accuracy(pairs):
        return sum(str(p) == str(y) for p, y in pairs) / len(pairs)
    c, b = accuracy(canary.labelled), accuracy(baseline.labelled)
    limit = b - t.max_accuracy_drop
    return Criterion("accuracy", c, b, limit, c >= limit,
                     f"canary accuracy {c:.4f} vs {b:.4f} (at least {limit:.4f})")


def analyze(canary: Served, baseline: Served, thresholds: Thresholds | None = None) -> Analysis:
    """The verdict on a canary from what both sides served."""
    t = (thresholds or Thresholds()).check()
    figures = (canary.figures(), baseline.figures())
    short = [s for s in (canary, baseline) if s.requests < t.min_requests]
    if short:
        names = ", ".join(f"{s.name} {s.requests}" for s in short)
        return Analysis(INCONCLUSIVE, f"too little traffic to judge: {names} requests (min_requests={t.min_requests})",
                        [], *figures)
    criteria = [Criterion("error_rate", canary.error_rate, baseline.error_rate,
                          baseline.error_rate + t.max_error_rate_increase,
                          canary.error_rate <= baseline.error_rate + t.max_error_rate_increase,
                          f"canary {canary.errors}/{canary.requests} failed vs {baseline.errors}/{baseline.requests} "
                          f"(at most +{t.max_error_rate_increase:g})")]
    c99, b99 = canary.latency(99), baseline.latency(99)
    if c99 is not None and b99 is not None:
        limit = b99 * t.max_latency_ratio
        criteria.append(Criterion("latency_p99_ms", c99, b99, limit, c99 <= limit,
                                  f"p99 {c99:.1f} ms vs {b99:.1f} ms (at most x{t.max_latency_ratio:g}); "
                                  f"p50 {canary.latency(50):.1f} ms vs {baseline.latency(50):.1f} ms"))
    if canary.predictions and baseline.predictions:
        distance, metric = prediction_distance(canary.predictions, baseline.predictions)
        criteria.append(Criterion("prediction_distance", distance, 0.0, t.max_prediction_distance,
                                  distance <= t.max_prediction_distance,
                                  f"{metric} between the versions' predictions {distance:.4f} "
                                  f"(at most {t.max_prediction_distance:g})"))
    truth = _ground_truth(canary, baseline, t)
    if truth is not None:
        criteria.append(truth)
    failed = [c for c in criteria if not c.passed]
    if failed:
        return Analysis(ROLLBACK, "; ".join(f"{c.name}: {c.detail}" for c in failed), criteria, *figures)
    return Analysis(PROMOTE, f"every criterion met on {canary.requests} canary and {baseline.requests} baseline requests",
                    criteria, *figures)
