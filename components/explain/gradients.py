"""Integrated gradients (Sundararajan et al. 2017) over a model's numeric inputs.

kfkit's models look categories up by value (StringLookup / IntegerLookup), which has no gradient,
so only the numeric features are integrated; the categorical ones stay at the row's values. The
attributions then sum to f(row) - f(row with its numbers at the baseline), not f(row) - f(baseline):
that second output is the one reported as baselineOutputValue. A number that is null in the row
or the baseline (the model imputes it) has no path and gets no attribution. The integral is the
midpoint rule over `steps` points; its error is reported per row as the completeness gap.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from kfkit.shapley import Attributions

# gradient(features, output_index) -> (outputs rows x outputs, {numeric feature: d output[index] / d feature})
Gradient = Callable[[dict[str, np.ndarray], np.ndarray], tuple[np.ndarray, dict[str, np.ndarray]]]


def integrated_gradients(gradient: Gradient, instances: dict[str, np.ndarray], baseline: dict[str, Any],
                         numeric: list[str], steps: int = 50, max_batch_rows: int = 65_536) -> Attributions:
    n = len(next(iter(instances.values())))
    held = {name: values for name, values in instances.items() if name not in numeric}
    start = {**held, **{name: np.full(n, baseline[name], dtype=instances[name].dtype) for name in numeric}}
    everything = np.arange(n)
    outputs, _ = gradient(instances, np.zeros(n, dtype=int))
    index = outputs.argmax(axis=1)
    start_outputs, _ = gradient(start, index)
    delta = {name: instances[name].astype(np.float64) - float(baseline[name]) for name in numeric}
    alphas = (np.arange(steps) + 0.5) / steps
    total = {name: np.zeros(n) for name in numeric}
    rows_per_call = max(1, max_batch_rows // steps)
    for first in range(0, n, rows_per_call):
        rows = everything[first:first + rows_per_call]
        along = np.repeat(rows, steps)
        alpha = np.tile(alphas, len(rows))
        batch = {name: values[along] for name, values in held.items()}
        for name in numeric:
            path = float(baseline[name]) + alpha * delta[name][along]
            batch[name] = np.where(np.isnan(path), instances[name][along], path).astype(instances[name].dtype)
        _, grads = gradient(batch, index[along])
        for name in numeric:
            total[name][rows] = grads[name].reshape(len(rows), steps).astype(np.float64).mean(axis=1)
    values = np.stack([np.nan_to_num(delta[name] * total[name]) for name in numeric], axis=1)
    instance_output = outputs[everything, index]
    baseline_output = start_outputs[everything, index]
    gap = values.sum(axis=1) - (instance_output - baseline_output)
    return Attributions(list(numeric), values, np.full(values.shape, np.nan), index, instance_output, baseline_output,
                        completeness_gap=gap)


def model_gradient(model) -> Gradient:
    """A kfkit LoadedModel's serving function with its gradient in the numeric inputs."""
    tf = model._tf
    key = "value" if model.spec.task == "regression" else "scores"
    types = {"float32": tf.float32, "int64": tf.int64, "string": tf.string}
    numeric = [f.name for f in model.spec.features if f.kind == "numeric"]

    def gradient(features: dict[str, np.ndarray], output_index: np.ndarray):
        tensors = {name: tf.constant(features[name], dtype=types[dtype]) for name, dtype in model.signature.items()}
        with tf.GradientTape() as tape:
            for name in numeric:
                tape.watch(tensors[name])
            out = tf.reshape(tf.cast(model.fn(**tensors)[key], tf.float64), [len(output_index), -1])
            chosen = tf.gather(out, tf.constant(output_index, dtype=tf.int32), axis=1, batch_dims=1)
        grads = tape.gradient(chosen, [tensors[name] for name in numeric])
        return out.numpy(), {name: (g.numpy() if g is not None else np.zeros(len(output_index)))
                             for name, g in zip(numeric, grads)}

    return gradient
