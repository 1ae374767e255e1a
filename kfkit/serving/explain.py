"""Served explanations: Vertex's explain contract over sampled Shapley.

    {"instances": [...], "explanationSpecOverride": {"parameters": {"sampledShapleyAttribution": {"pathCount": 10}},
                                                     "metadata": {"inputs": {"body_mass_g": {"inputBaselines": [4000]}}}}}
    ->  {"explanations": [{"attributions": [{"featureAttributions": {...}, "baselineOutputValue": ...,
                                             "instanceOutputValue": ..., "outputIndex": [k], ...}]}],
         "predictions": [...], "deployedModelId": ...}

The path count is the request's sample budget: each instance costs path_count x (features + 1)
predictions, so it is capped at Vertex's own limit for sampled Shapley (50). Without a baseline in
the request, numbers start from their training mean (kept in the model's metadata) and categories
from the out-of-vocabulary bucket ("" or null: the model's "unknown" input), so an attribution says
how much knowing the value moved the output; the explain component's baseline (medians and most
frequent values of a split) needs data the server does not have.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kfkit.serving.model_io import LoadedModel, RequestError, instances_to_arrays
from kfkit.shapley import model_outputs, output_names, sampled_shapley, vertex_attribution
from kfkit.tabular import NULL_INT, ModelSpec

DEFAULT_PATH_COUNT = 10
MAX_PATH_COUNT = 50  # Vertex's limit for sampledShapleyAttribution.pathCount


def default_baseline(spec: ModelSpec) -> dict[str, Any]:
    return {f.name: (f.mean if f.kind == "numeric" else NULL_INT if f.value_type == "int64" else "")
            for f in spec.features}


def _override(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    override = body.get("explanationSpecOverride") or {}
    if not isinstance(override, dict):
        raise RequestError("'explanationSpecOverride' must be an object")
    shapley = ((override.get("parameters") or {}).get("sampledShapleyAttribution") or {})
    paths = shapley.get("pathCount", DEFAULT_PATH_COUNT)
    if isinstance(paths, bool) or not isinstance(paths, int) or not 1 <= paths <= MAX_PATH_COUNT:
        raise RequestError(f"sampledShapleyAttribution.pathCount must be an integer from 1 to {MAX_PATH_COUNT}; "
                           f"got {paths!r}")
    inputs = ((override.get("metadata") or {}).get("inputs") or {})
    baselines = {}
    for name, meta in inputs.items():
        values = meta.get("inputBaselines") if isinstance(meta, dict) else None
        if not isinstance(values, list) or len(values) != 1:
            raise RequestError(f"metadata.inputs.{name}.inputBaselines must be a list of one value")
        baselines[name] = values[0]
    return paths, baselines


def explain_instances(model: LoadedModel, body: dict[str, Any]) -> dict[str, Any]:
    """The explanations and predictions of a request's instances (RequestError names what is wrong)."""
    paths, overrides = _override(body)
    instances = body["instances"]
    arrays = instances_to_arrays(instances, model.signature)
    unknown = [name for name in overrides if name not in model.signature]
    if unknown:
        raise RequestError(f"inputBaselines for {unknown[0]!r}, which the model does not take")
    baseline = default_baseline(model.spec)
    if overrides:  # checked and typed as an instance would be
        given = instances_to_arrays([{**baseline, **overrides}], model.signature)
        baseline = {name: values[0] for name, values in given.items()}
    result = sampled_shapley(model_outputs(model), arrays, baseline, paths, seed=0)
    names = output_names(model.spec)
    explanations = [{"attributions": [vertex_attribution(result, i, names)]} for i in range(len(instances))]
    if not np.isfinite(result.values).all():
        raise RequestError("the model's output is not a finite number for these instances or the baseline")
    return {"explanations": explanations, "predictions": model.predict_instances(instances)}
