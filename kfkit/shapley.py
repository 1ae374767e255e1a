"""Sampled Shapley attributions over a model's raw input columns, as Vertex Explainable AI computed
them for tabular models (Štrumbelj & Kononenko's permutation sampling).

Each path is a random order of the features: starting from the baseline, the features switch to
the instance's value one at a time, and each feature is credited with the change in the output
its switch caused. A feature's attribution is its mean credit over `path_count` paths. Every path's
credits add up to f(instance) - f(baseline), so the efficiency property holds exactly (to float
rounding) whatever the path count; sampling only moves credit between features, by about the
standard error each attribution carries (its credits' standard deviation over paths / sqrt(paths)).

Works on any `predict(features) -> outputs (rows x outputs)`, so the explain component, the server and
shap's reference all explain the same function. Core (numpy only), so the server may use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

Predict = Callable[[dict[str, np.ndarray]], np.ndarray]


@dataclass
class Attributions:
    features: list[str]
    values: np.ndarray  # rows x features: each feature's credit for the explained output
    standard_errors: np.ndarray  # rows x features
    output_index: np.ndarray  # rows: which output was explained (the instance's top class; 0 for a regressor)
    instance_output: np.ndarray  # rows
    baseline_output: np.ndarray  # rows (the baseline's value of each row's explained output)
    # rows: how far the attributions' sum misses instance - baseline output (integrated gradients' quadrature
    # error); None for sampled Shapley, whose sum is exact and whose error is in the split (standard_errors)
    completeness_gap: np.ndarray | None = None


def sampled_shapley(predict: Predict, instances: dict[str, np.ndarray], baseline: dict[str, object],
                    path_count: int = 25, seed: int = 0, output_index: np.ndarray | None = None,
                    max_batch_rows: int = 65_536) -> Attributions:
    """Attributions of each instance's output `output_index` (default: its highest output) to its features."""
    features = list(instances)
    n, f = len(instances[features[0]]), len(features)
    rng = np.random.default_rng(seed)
    order = rng.permuted(np.tile(np.arange(f), (n, path_count, 1)), axis=2)  # n x paths x f
    rank = np.argsort(order, axis=2)  # the step at which each feature switches on each path
    steps = np.arange(f + 1)
    # rows of the batch: (instance, path, step); at step s the features ranked below s hold the instance's value
    switched = rank[:, :, None, :] < steps[None, None, :, None]  # n x paths x (f+1) x f
    row = np.repeat(np.arange(n), path_count * (f + 1))
    total = n * path_count * (f + 1)
    outputs = []
    for start in range(0, total, max_batch_rows):
        part = slice(start, min(total, start + max_batch_rows))
        batch = {}
        for j, name in enumerate(features):
            values = instances[name][row[part]]
            fill = np.full(len(values), baseline[name], dtype=values.dtype)
            batch[name] = np.where(switched[..., j].reshape(-1)[part], values, fill)
        outputs.append(np.asarray(predict(batch), dtype=np.float64).reshape(part.stop - part.start, -1))
    out = np.concatenate(outputs).reshape(n, path_count, f + 1, -1)
    if output_index is None:
        output_index = out[:, 0, f, :].argmax(axis=1)  # step f: every feature switched, the instance itself
    chosen = out[np.arange(n), :, :, output_index]  # n x paths x (f+1)
    credit = np.diff(chosen, axis=2)  # n x paths x f: the change at each step
    per_feature = np.take_along_axis(credit, rank, axis=2)  # credit of each feature on each path
    errors = per_feature.std(axis=1, ddof=1) / np.sqrt(path_count) if path_count > 1 else np.full((n, f), np.nan)
    return Attributions(features, per_feature.mean(axis=1), errors, output_index, chosen[:, 0, f], chosen[:, 0, 0])


def model_outputs(model) -> Predict:
    """The model as predict(features) -> rows x outputs: class scores, or a regressor's value."""
    key = "value" if model.spec.task == "regression" else "scores"

    def predict(features: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(model.predict_arrays(features)[key], dtype=np.float64).reshape(len(next(iter(features.values()))), -1)

    return predict


def output_names(spec) -> list[str]:
    return [spec.label] if spec.task == "regression" else list(spec.classes)


def vertex_attribution(result: Attributions, row: int, names: list[str]) -> dict[str, Any]:
    """One row in the shape of Vertex's Attribution message (JSON field names)."""
    index = int(result.output_index[row])
    errors = result.standard_errors[row]
    return {"baselineOutputValue": float(result.baseline_output[row]),
            "instanceOutputValue": float(result.instance_output[row]),
            "featureAttributions": {f: float(v) for f, v in zip(result.features, result.values[row])},
            "outputIndex": [index], "outputDisplayName": names[index], "outputName": names[index],
            "approximationError": _approximation_error(result, row, errors)}


def _approximation_error(result: Attributions, row: int, errors: np.ndarray) -> float:
    """Vertex leaves its meaning to the method. Sampled Shapley: the root mean square of the features'
    standard errors; integrated gradients: |sum of attributions - (instance - baseline output)|, as Vertex's."""
    if result.completeness_gap is not None:
        return float(abs(result.completeness_gap[row]))
    return float(np.sqrt(np.mean(errors ** 2))) if np.isfinite(errors).all() else 0.0
