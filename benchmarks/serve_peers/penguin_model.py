"""The penguins SavedModel as a peer server runs it: TensorFlow and NumPy only, no kfkit.

What a custom Python model for any of the peers does: load the SavedModel once, and per request
turn the instances into one tensor per input, call the serving signature, and turn the outputs
back into one dict per instance. No checks beyond what TensorFlow does itself.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402


class SavedModel:
    def __init__(self, model_dir: str):
        self._loaded = tf.saved_model.load(model_dir)
        self.fn = self._loaded.signatures["serving_default"]
        self.inputs = {name: spec.dtype for name, spec in self.fn.structured_input_signature[1].items()}

    def predict_columns(self, columns: dict) -> dict:
        """{input: values} -> {output: numpy array}."""
        tensors = {name: tf.constant(columns[name], dtype=dtype) for name, dtype in self.inputs.items()}
        return {name: value.numpy() for name, value in self.fn(**tensors).items()}

    def predict(self, instances: list[dict]) -> list[dict]:
        outputs = self.predict_columns({name: [row[name] for row in instances] for name in self.inputs})
        columns = {}
        for name, values in outputs.items():
            listed = values.tolist()
            columns[name] = [v.decode() if isinstance(v, bytes) else v for v in listed] if values.ndim == 1 else listed
        return [dict(zip(columns, row)) for row in zip(*columns.values())]
