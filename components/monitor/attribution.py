"""Feature attribution drift: has a feature's share of the model's explanations moved?

Vertex AI Model Monitoring watched the same thing with Vertex Explainable AI (v1: the objective types
FEATURE_ATTRIBUTION_SKEW and FEATURE_ATTRIBUTION_DRIFT, thresholds "against attribution score
distance" in `attribution_score_skew_thresholds` / `attribution_score_drift_thresholds`; v2:
`ModelMonitoringObjectiveSpec.FeatureAttributionSpec`, one alert threshold per feature,
aiplatform_v1beta1/types/model_monitoring_spec.py). Vertex's attribution score of a feature is a
number "within range [0, 1]" (FeatureStatsAnomaly.score, aiplatform_v1beta1/types/
feature_monitoring_stats.py): kfkit makes it the feature's share of the global importance,

    score(f) = mean |attribution(f)| / sum over features g of mean |attribution(g)|

over the explained rows of one side, so the scores of a side add up to 1 whatever the model's output
scale (a class probability or a regressor's value); and the distance of a feature is how far its
score moved, |score_window(f) - score_baseline(f)|, in [0, 1]. Its verdict follows the monitor's
rules (drift.py): `drift` over its threshold, `ok` under it, `insufficient data` when the window has
fewer rows than min_count.

Attributions are kfkit.shapley's sampled Shapley on the raw features, from the same starting point on
both sides: the training means of the numbers and the unknown bucket of the categories (what
`kfkit serve`'s /explain starts from; kfkit.serving.explain.default_baseline). Each side is a seeded
sample of at most SAMPLE_ROWS rows, so the cost is bounded whatever the window holds:
2 x SAMPLE_ROWS x PATH_COUNT x (features + 1) predictions (penguins: 2 x 200 x 10 x 7 = 28,000).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from kfkit.components.monitor import drift
from kfkit.components.monitor.drift import FeatureDrift

SAMPLE_ROWS = 200  # rows explained per side (a seeded sample beyond it)
PATH_COUNT = 10    # sampled Shapley paths per row: kfkit serve's default
PREFIX = "attribution:"  # verdict names: attribution:<feature>, beside the feature's own distribution verdict


@dataclass
class AttributionProfile:
    """One side: each feature's mean |attribution| and score (its share), over `rows` explained rows."""

    mean_abs: dict[str, float]
    rows: int
    invalid: int = 0  # rows the model could not take (a value of the wrong type), left out

    @property
    def scores(self) -> dict[str, float]:
        total = sum(self.mean_abs.values())
        return {f: (v / total if total > 0 else 0.0) for f, v in self.mean_abs.items()}


def _rows(data: Any) -> list:
    if isinstance(data, pa.Table):
        return data.to_pylist()
    return list(data or [])


def _arrays(rows: list, signature: dict[str, str]) -> tuple[dict[str, np.ndarray] | None, int]:
    """The rows as model inputs (absent fields null, other fields dropped); rows the model cannot take
    are left out and counted."""
    from kfkit.serving.model_io import RequestError, instances_to_arrays

    projected = [{name: row.get(name) for name in signature} for row in rows if isinstance(row, dict)]
    invalid = len(rows) - len(projected)
    if not projected:
        return None, invalid
    try:
        return instances_to_arrays(projected, signature), invalid
    except RequestError:
        kept = []
        for row in projected:
            try:
                instances_to_arrays([row], signature)
                kept.append(row)
            except RequestError:
                invalid += 1
        return (instances_to_arrays(kept, signature) if kept else None), invalid


def profile(model, data: Any, seed: int = 0, sample_rows: int = SAMPLE_ROWS,
            path_count: int = PATH_COUNT) -> AttributionProfile:
    """Mean |attribution| per feature over a seeded sample of `data` (an Arrow table or logged instances)."""
    from kfkit.serving.explain import default_baseline
    from kfkit.shapley import model_outputs, sampled_shapley

    rows = _rows(data)
    if sample_rows and len(rows) > sample_rows:
        chosen = np.sort(np.random.default_rng(seed).choice(len(rows), sample_rows, replace=False))
        rows = [rows[i] for i in chosen]
    features = [f.name for f in model.spec.features]
    arrays, invalid = _arrays(rows, model.signature)
    if arrays is None:
        return AttributionProfile({f: 0.0 for f in features}, 0, invalid)
    result = sampled_shapley(model_outputs(model), arrays, default_baseline(model.spec), path_count, seed)
    mean_abs = np.abs(result.values).mean(axis=0)
    return AttributionProfile(dict(zip(result.features, map(float, mean_abs))), len(result.values), invalid)


def compare(baseline: AttributionProfile, target: AttributionProfile, threshold: float,
            thresholds: dict[str, float] | None = None, min_count: int = drift.DEFAULT_MIN_COUNT,
            baseline_name: str = "baseline") -> list[FeatureDrift]:
    """One verdict per feature, named attribution:<feature>, with both sides' scores as evidence."""
    thresholds = thresholds or {}
    base_scores, target_scores = baseline.scores, target.scores
    out = []
    for feature in baseline.mean_abs:
        name = PREFIX + feature
        limit = float(thresholds.get(name, threshold))
        result = FeatureDrift(name, "attribution", drift.OK, None, limit, present=target.rows, invalid=target.invalid)
        if baseline.rows == 0 or target.rows == 0:
            result.status = drift.MISSING if target.rows == 0 else drift.ERROR
            result.message = ("no row of the window could be explained" if target.rows == 0
                              else f"no row of the {baseline_name} could be explained")
            out.append(result)
            continue
        b, t = base_scores[feature], target_scores[feature]
        result.distance = abs(t - b)
        result.baseline, result.target, result.labels = [b], [t], ["attribution score"]
        result.evidence = {"baseline_score": b, "window_score": t,
                           "baseline_mean_abs_attribution": baseline.mean_abs[feature],
                           "window_mean_abs_attribution": target.mean_abs[feature],
                           "baseline_rows": baseline.rows, "window_rows": target.rows}
        result.message = (f"attribution score {b:.3f} in the {baseline_name} ({baseline.rows} rows), {t:.3f} in the "
                          f"window ({target.rows} rows); mean |attribution| {baseline.mean_abs[feature]:.4g} -> "
                          f"{target.mean_abs[feature]:.4g}")
        if target.rows < min_count:
            result.status = drift.INSUFFICIENT
            result.message += f"; {target.rows} rows, fewer than min_count={min_count}: no verdict"
        else:
            result.status = drift.DRIFT if result.distance > limit else drift.OK
        out.append(result)
    return out


def attribution_drift(model, baseline_data: Any, window_data: Any, threshold: float,
                      thresholds: dict[str, float] | None = None, min_count: int = drift.DEFAULT_MIN_COUNT,
                      seed: int = 0, sample_rows: int = SAMPLE_ROWS, baseline_name: str = "baseline") -> list[FeatureDrift]:
    """Verdicts of every feature's attribution score, window against baseline (each a seeded sample)."""
    base = profile(model, baseline_data, seed, sample_rows)
    window = profile(model, window_data, seed + 1, sample_rows)
    return compare(base, window, threshold, thresholds, min_count, baseline_name)
