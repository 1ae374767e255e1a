"""Feature attributions of a kfkit model on a split: sampled Shapley (or integrated gradients) per row,
global importance.

The baseline is the row every path starts from: the median of each numeric feature and the most
frequent value of each categorical one, over the baseline split (as Vertex AutoML tabular models
chose theirs), so an attribution says how far this row's value moved the output from a typical row.
The explained output is each row's top class score (a regressor's value), as Vertex explained by
default. Global importance is the mean absolute attribution per feature over the explained rows.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.dataset as pads

from kfkit.errors import ConfigError
from kfkit.shapley import model_outputs, output_names, sampled_shapley, vertex_attribution
from kfkit.tabular import NULL_INT, ModelSpec, features_to_numpy

log = logging.getLogger("kfkit.explain")


def read_features(data: str | Path, spec: ModelSpec, max_rows: int = 0, seed: int = 0) -> dict[str, np.ndarray]:
    dataset = pads.dataset(str(data), format="parquet")
    missing = [f.name for f in spec.features if f.name not in dataset.schema.names]
    if missing:
        raise ConfigError(f"{str(data)!r} lacks column(s) {', '.join(map(repr, missing))} that the model needs")
    table = dataset.to_table(columns=[f.name for f in spec.features])
    if table.num_rows == 0:
        raise ConfigError(f"{str(data)!r} has no rows to explain")
    if max_rows and table.num_rows > max_rows:  # a seeded sample, so a rerun explains the same rows
        rows = np.sort(np.random.default_rng(seed).choice(table.num_rows, max_rows, replace=False))
        table = table.take(rows)
    return features_to_numpy(table, spec)


def baseline_of(features: dict[str, np.ndarray], spec: ModelSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for feature in spec.features:
        values = features[feature.name]
        if feature.kind == "numeric":
            present = values[~np.isnan(values)]
            out[feature.name] = float(np.median(present)) if len(present) else float("nan")
            continue
        present = values[values != (NULL_INT if feature.value_type == "int64" else "")]
        if not len(present):
            out[feature.name] = values[0]
            continue
        kinds, counts = np.unique(present, return_counts=True)
        out[feature.name] = kinds[counts.argmax()].item() if hasattr(kinds[0], "item") else kinds[counts.argmax()]
    return out


METHODS = ("sampled_shapley", "integrated_gradients")
BASELINE_ROWS = 100_000


def explain(model_dir: str | Path, data: str | Path, baseline_data: str | Path | None = None, path_count: int = 25,
            max_rows: int = 1000, seed: int = 0, method: str = "sampled_shapley", step_count: int = 50) -> dict[str, Any]:
    """Attributions of up to max_rows rows of `data` and the features' global importance, as JSON.

    path_count: sampled Shapley's random feature orders; step_count: integrated gradients' integration points."""
    from kfkit.serving.model_io import LoadedModel

    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if path_count < 1 or step_count < 1:
        raise ConfigError(f"path_count and step_count must be at least 1; got {path_count} and {step_count}")
    model = LoadedModel(model_dir)
    spec = model.spec
    instances = read_features(data, spec, max_rows, seed)
    # medians and modes settle long before a training split's size: a seeded sample bounds the memory
    baseline = baseline_of(read_features(baseline_data, spec, BASELINE_ROWS, seed) if baseline_data else instances, spec)
    if method == "integrated_gradients":
        from kfkit.components.explain.gradients import integrated_gradients, model_gradient

        numeric = [f.name for f in spec.features if f.kind == "numeric"]
        if not numeric:
            raise ConfigError("integrated_gradients needs a numeric feature; this model has none (use sampled_shapley)")
        result = integrated_gradients(model_gradient(model), instances, baseline, numeric, step_count)
    else:
        result = sampled_shapley(model_outputs(model), instances, baseline, path_count, seed)
    names = output_names(spec)
    importance = np.abs(result.values).mean(axis=0)
    log.info("explained %d rows by %s", len(result.values), method)
    return {
        "method": method, **({"step_count": step_count} if method == "integrated_gradients" else {"path_count": path_count}),
        "rows": int(len(result.values)),
        "baseline": {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in baseline.items()},
        "feature_importance": dict(sorted(zip(result.features, map(float, importance)), key=lambda kv: -kv[1])),
        "mean_attribution": {f: float(v) for f, v in zip(result.features, result.values.mean(axis=0))},
        "attributions": [vertex_attribution(result, i, names) for i in range(len(result.values))],
    }
