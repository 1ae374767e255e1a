"""Training logic: a Keras model with its preprocessing inside, fed by tf.data from Parquet shards.

TensorFlow is imported inside the functions, so importing this module (to compile a pipeline)
stays quick. The exported SavedModel takes raw feature values, one tensor per column, exactly as
they sit in the table; Vertex's prebuilt TensorFlow containers and TF Serving load it as it is.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kfkit.atomic import atomic_dir
from kfkit.errors import ConfigError
from kfkit.tabular import EMBEDDING_THRESHOLD, ModelSpec, build_spec, check_columns, iter_batches

log = logging.getLogger("kfkit.train")


@dataclass
class Hyperparameters:
    hidden_units: list[int] = field(default_factory=lambda: [64, 32])
    learning_rate: float = 0.01
    epochs: int = 30
    batch_size: int = 64
    patience: int = 5
    seed: int | None = 42
    dropout: float = 0.0  # share of each hidden layer's units dropped while training

    def check(self) -> "Hyperparameters":
        if not self.hidden_units or any(int(u) <= 0 for u in self.hidden_units):
            raise ConfigError(f"hidden_units must be positive layer widths, got {self.hidden_units}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        return self


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    return tf


def accelerators() -> list[str]:
    """The GPUs TensorFlow can train on: some in the GPU trainer image on a GPU machine, none in the CPU image."""
    return [device.name for device in _tf().config.list_physical_devices("GPU")]


def strategy_from_env():
    """MultiWorkerMirroredStrategy when TF_CONFIG names several workers (Vertex CustomJob), else default."""
    tf = _tf()
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    workers = sum(len(v) for k, v in config.get("cluster", {}).items() if k in ("chief", "worker"))
    if workers > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def make_dataset(path: str | Path, spec: ModelSpec, batch_size: int, shuffle_seed: int | None = None,
                 chunk_rows: int = 65_536):
    """A tf.data pipeline streaming (features, label) batches from the Parquet shards.

    Python reads large chunks (one Arrow -> numpy conversion per chunk) and tf.data's rebatch cuts
    them into training batches in C++, so per-batch Python overhead does not bound throughput.
    """
    tf = _tf()
    # categories travel as vocabulary ids (see kfkit.tabular.category_ids): numeric tensors cross
    # from Python to TensorFlow far faster than strings; the exported model maps strings itself
    signature = {f.name: tf.TensorSpec([None], tf.float32 if f.kind == "numeric" else tf.int32)
                 for f in spec.features}
    label_spec = tf.TensorSpec([None], tf.float32 if spec.task == "regression" else tf.int32)
    dataset = tf.data.Dataset.from_generator(
        lambda: iter_batches(path, spec, max(chunk_rows, batch_size), shuffle_seed=shuffle_seed,
                             encode_categories=True),
        output_signature=(signature, label_spec))
    return dataset.rebatch(batch_size).prefetch(tf.data.AUTOTUNE)


def build_model(spec: ModelSpec, hp: Hyperparameters):
    """The trained network: imputation and normalization are layers; categories come in as ids."""
    tf = _tf()
    import keras

    inputs, encoded = {}, []
    for feature in spec.features:
        if feature.kind == "numeric":
            x = keras.Input(shape=(1,), dtype="float32", name=feature.name)
            inputs[feature.name] = x
            # nulls arrive as NaN and become the training mean, i.e. 0 after normalization
            filled = keras.layers.Lambda(lambda t, m=feature.mean: tf.where(tf.math.is_nan(t), m, t),
                                         name=f"impute_{feature.name}")(x)
            encoded.append(keras.layers.Normalization(mean=feature.mean, variance=feature.variance,
                                                      name=f"norm_{feature.name}")(filled))
        else:
            x = keras.Input(shape=(1,), dtype="int32", name=feature.name)
            inputs[feature.name] = x
            size = len(feature.vocabulary) + 1  # id 0: null or unseen
            if size <= EMBEDDING_THRESHOLD:
                encoded.append(keras.layers.CategoryEncoding(size, output_mode="one_hot",
                                                             name=f"onehot_{feature.name}")(x))
            else:
                dim = min(16, int(size ** 0.5) + 1)
                emb = keras.layers.Embedding(size, dim, name=f"embed_{feature.name}")(x)
                encoded.append(keras.layers.Flatten()(emb))
    hidden = keras.layers.Concatenate(name="features")(encoded) if len(encoded) > 1 else encoded[0]
    for i, units in enumerate(hp.hidden_units):
        hidden = keras.layers.Dense(int(units), activation="relu", name=f"dense_{i}")(hidden)
        if hp.dropout > 0:
            hidden = keras.layers.Dropout(hp.dropout, seed=hp.seed, name=f"dropout_{i}")(hidden)
    if spec.task == "regression":
        output, loss, metrics = keras.layers.Dense(1, name="prediction")(hidden), "mse", ["mae"]
    elif spec.task == "binary":
        output = keras.layers.Dense(1, activation="sigmoid", name="prediction")(hidden)
        loss, metrics = "binary_crossentropy", ["accuracy"]
    else:
        output = keras.layers.Dense(len(spec.classes), activation="softmax", name="prediction")(hidden)
        loss, metrics = "sparse_categorical_crossentropy", ["accuracy"]
    model = keras.Model(inputs, output)
    model.compile(optimizer=keras.optimizers.Adam(hp.learning_rate), loss=loss, metrics=metrics)
    return model


def serving_model(model, spec: ModelSpec):
    """The trained network behind StringLookup layers: raw strings in, as they sit in the table."""
    import keras

    inputs, routed = {}, {}
    for feature in spec.features:
        if feature.kind == "numeric":
            inputs[feature.name] = routed[feature.name] = keras.Input(shape=(1,), dtype="float32", name=feature.name)
        elif feature.value_type == "int64":
            x = keras.Input(shape=(1,), dtype="int64", name=feature.name)
            inputs[feature.name] = x
            ids = keras.layers.IntegerLookup(vocabulary=[int(v) for v in feature.vocabulary], num_oov_indices=1,
                                             output_mode="int", name=f"lookup_{feature.name}")(x)
            routed[feature.name] = keras.ops.cast(ids, "int32")
        else:
            x = keras.Input(shape=(1,), dtype="string", name=feature.name)
            inputs[feature.name] = x
            ids = keras.layers.StringLookup(vocabulary=feature.vocabulary, num_oov_indices=1,
                                            output_mode="int", name=f"lookup_{feature.name}")(x)
            routed[feature.name] = keras.ops.cast(ids, "int32")
    return keras.Model(inputs, model(routed))


def export(model, spec: ModelSpec, directory: Path) -> None:
    """SavedModel whose serving signature takes one 1-D tensor per raw column.

    Outputs: classification -> `scores` (probability per class, in `classes` order) and `classes`
    (the predicted class name); regression -> `value`.
    """
    tf = _tf()
    import keras

    full = serving_model(model, spec)
    classes = tf.constant(spec.classes or ["_"])
    mean, std = spec.label_mean, spec.label_std

    def serve(features):
        outputs = full({name: tf.expand_dims(value, -1) for name, value in features.items()})
        if spec.task == "regression":
            return {"value": tf.squeeze(outputs, -1) * std + mean}
        if spec.task == "binary":
            p = tf.squeeze(outputs, -1)
            scores = tf.stack([1.0 - p, p], axis=-1)
        else:
            scores = outputs
        return {"scores": scores, "classes": tf.gather(classes, tf.argmax(scores, -1))}

    archive = keras.export.ExportArchive()
    archive.track(full)
    tf_types = {"float32": tf.float32, "int64": tf.int64, "string": tf.string}
    signature = {f.name: tf.TensorSpec([None], tf_types[f.dtype], name=f.name) for f in spec.features}
    archive.add_endpoint(name="serve", fn=serve, input_signature=[signature])
    archive.write_out(str(directory), verbose=False)
    spec.save(directory)


@dataclass
class TrainResult:
    spec: ModelSpec
    history: dict[str, list[float]]
    epochs_run: int
    seconds: float
    metrics: dict[str, float]


def train(train_data: str | Path, eval_data: str | Path, statistics: dict[str, Any], schema: dict[str, Any],
          label: str, model_dir: str | Path | None, hp: Hyperparameters | None = None, task: str = "auto",
          exclude_columns: list[str] | None = None, tensorboard_dir: str | Path | None = None,
          categorical_columns: list[str] | None = None, callbacks: list | None = None,
          verbose: int = 2) -> TrainResult:
    """Train, early-stop on the eval split, and export the SavedModel to model_dir (atomically).

    model_dir None: nothing exported (a tuning trial wants only the metrics); callbacks: more Keras
    callbacks (a tuning trial's pruning)."""
    hp = (hp or Hyperparameters()).check()
    spec = build_spec(statistics, schema, label, task, exclude_columns, categorical_columns)
    check_columns(train_data, spec)
    check_columns(eval_data, spec)
    tf = _tf()
    import keras

    if hp.seed is not None:
        keras.utils.set_random_seed(hp.seed)
        tf.config.experimental.enable_op_determinism()
    started = time.perf_counter()
    strategy = strategy_from_env()
    with strategy.scope():
        model = build_model(spec, hp)
    callbacks = [keras.callbacks.EarlyStopping(monitor="val_loss", patience=hp.patience, restore_best_weights=True),
                 *(callbacks or [])]
    tb_dir = os.environ.get("AIP_TENSORBOARD_LOG_DIR") or tensorboard_dir
    if tb_dir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(tb_dir), histogram_freq=0))
    # Keras cannot know a generator's length before the first epoch ends and says so; harmless
    warnings.filterwarnings("ignore", message=".*ran out of data.*")
    warnings.filterwarnings("ignore", message=".*`shuffle=True` was passed.*")
    history = model.fit(make_dataset(train_data, spec, hp.batch_size, shuffle_seed=hp.seed if hp.seed is not None else 0),
                        validation_data=make_dataset(eval_data, spec, hp.batch_size),
                        epochs=hp.epochs, callbacks=callbacks, verbose=verbose)
    if model_dir is not None:
        with atomic_dir(model_dir) as tmp:
            export(model, spec, tmp)
            # the training baseline travels with the model: the monitor compares serving traffic with it
            (tmp / "kfkit_statistics.json").write_text(json.dumps(statistics))
    hist = {k: [float(v) for v in values] for k, values in history.history.items()}
    best = min(range(len(hist["val_loss"])), key=hist["val_loss"].__getitem__)
    metrics = {f"{'eval' if k.startswith('val_') else 'train'}_{k.removeprefix('val_')}": values[best]
               for k, values in hist.items()}
    seconds = time.perf_counter() - started
    log.info("trained %s model on %d features in %.1fs (%d epochs, best %d) on %s", spec.task, len(spec.features),
             seconds, len(hist["loss"]), best + 1, ", ".join(accelerators()) or "CPU")
    return TrainResult(spec, hist, len(hist["loss"]), seconds, metrics)
