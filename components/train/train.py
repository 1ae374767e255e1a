"""Training logic: a Keras model with its preprocessing inside, fed by tf.data from Parquet shards.

TensorFlow is imported inside the functions, so importing this module (to compile a pipeline)
stays quick. The exported SavedModel takes raw feature values, one tensor per column, exactly as
they sit in the table; Vertex's prebuilt TensorFlow containers and TF Serving load it as it is.
"""

from __future__ import annotations

import contextlib
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


@dataclass(frozen=True)
class Worker:
    """This process's place among the training workers that TF_CONFIG names."""
    index: int = 0  # 0 is the chief: the `chief` task if the cluster has one, else worker 0
    count: int = 1

    @property
    def is_chief(self) -> bool:
        return self.index == 0


def worker_from_env() -> Worker:
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    cluster, task = config.get("cluster", {}), config.get("task", {})
    chiefs, workers = len(cluster.get("chief", [])), len(cluster.get("worker", []))
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    if kind == "chief":
        return Worker(0, chiefs + workers)
    if kind != "worker":  # an evaluator or a parameter server never trains here
        raise ConfigError(f"TF_CONFIG task type {kind!r}: train runs only as chief or worker")
    return Worker(chiefs + index, max(chiefs + workers, 1))


def strategy_from_env():
    """MultiWorkerMirroredStrategy when TF_CONFIG names several workers (Vertex CustomJob), else default."""
    tf = _tf()
    if worker_from_env().count > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def _build_from_local_batch(model, strategy) -> None:
    """Keras 3 fit under MultiWorkerMirroredStrategy: build from this worker's own batch.

    Keras 3's TF trainer builds the model before the first step by all-reducing the first batch
    (`strategy.reduce` on the (features, label) structure), which fails on a dict of features
    (keras-team/keras#20329). Any batch of the right shapes and types builds the same variables, so
    this worker's local part of the first batch is used, with no cross-worker traffic at all.
    """
    tf = _tf()

    def local(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tf.nest.map_structure(local, next(it))
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = maybe_symbolic_build


@contextlib.contextmanager
def _mean_over_workers():
    """Keras 3 fit under MultiWorkerMirroredStrategy: average each step's logs over the workers.

    Keras 3's TF trainer reduces the per-replica logs (loss, metrics: scalars) with
    `strategy.reduce("MEAN", value, axis=0)` whenever the strategy spans workers, and a scalar has no
    axis 0, so the first step fails. The mean over replicas with axis=None is what was meant: every
    worker then sees the same logs, so early stopping and the backups decide alike everywhere.
    """
    tf = _tf()
    from keras.src.backend.tensorflow import trainer

    original = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean"):
            return original(values, strategy, reduction)
        return tf.nest.map_structure(
            lambda v: strategy.reduce("MEAN", v, axis=None)
            if isinstance(v, tf.distribute.DistributedValues) else v, values)

    trainer.reduce_per_replica = reduce_per_replica
    try:
        yield
    finally:
        trainer.reduce_per_replica = original


def row_count(path: str | Path) -> int:
    import pyarrow.parquet as pq

    from kfkit.tabular import shards
    return sum(pq.ParquetFile(f).metadata.num_rows for f in shards(path))


def make_dataset(path: str | Path, spec: ModelSpec, batch_size: int, shuffle_seed: int | None = None,
                 chunk_rows: int = 65_536, share: tuple[int, int] = (0, 1)):
    """A tf.data pipeline streaming (features, label) batches from the Parquet shards.

    Python reads large chunks (one Arrow -> numpy conversion per chunk) and tf.data's rebatch cuts
    them into training batches in C++, so per-batch Python overhead does not bound throughput.
    share: (worker index, workers): this worker's part of the rows only (see iter_batches).
    """
    tf = _tf()
    # categories travel as vocabulary ids (see kfkit.tabular.category_ids): numeric tensors cross
    # from Python to TensorFlow far faster than strings; the exported model maps strings itself
    signature = {f.name: tf.TensorSpec([None], tf.float32 if f.kind == "numeric" else tf.int32)
                 for f in spec.features}
    label_spec = tf.TensorSpec([None], tf.float32 if spec.task == "regression" else tf.int32)
    dataset = tf.data.Dataset.from_generator(
        lambda: iter_batches(path, spec, max(chunk_rows, batch_size), shuffle_seed=shuffle_seed,
                             encode_categories=True, share=share),
        output_signature=(signature, label_spec))
    return dataset.rebatch(batch_size).prefetch(tf.data.AUTOTUNE)


def label_units_mae(y_true, y_pred, scale: float = 1.0):
    """Mean absolute error of a standardized label, in the label's units: |a - b| * std."""
    import keras

    y_pred = keras.ops.reshape(y_pred, keras.ops.shape(y_true))
    return keras.ops.abs(y_true - y_pred) * scale


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
        # the network learns the standardized label (see label_to_numpy); the MAE is reported in the
        # label's own units, so tune's eval_mae and the registry's figures read as the column does
        mae = keras.metrics.MeanMetricWrapper(fn=label_units_mae, name="mae", scale=float(spec.label_std))
        output, loss, metrics = keras.layers.Dense(1, name="prediction")(hidden), "mse", [mae]
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
    is_chief: bool = True  # under several workers only the chief's outputs are kept
    resumed_epoch: int = 0  # epochs restored from the checkpoint directory, not trained in this run


def distributed_dataset(strategy, path: str | Path, spec: ModelSpec, batch_size: int,
                        shuffle_seed: int | None = None):
    """Each worker streams its own share of the rows, repeated; fit's steps per epoch bound an epoch.

    batch_size is the global batch of one step: each worker contributes batch_size / workers rows
    (the remainder to the first workers). Repetition plus a fixed number of steps keeps every worker
    in the same collective step even when the shares differ by a few rows.
    """
    def dataset_fn(context):
        index, count = context.input_pipeline_id, context.num_input_pipelines
        rows = batch_size // count + (1 if index < batch_size % count else 0)
        return make_dataset(path, spec, rows, shuffle_seed=shuffle_seed, share=(index, count)).repeat()

    return strategy.distribute_datasets_from_function(dataset_fn)


def backup_callback(backup_dir: str | Path, worker: Worker):
    """Keras BackupAndRestore for several workers: all restore from backup_dir, only the chief writes it.

    The other workers still save (saving may take part in collective reads) but into a scratch
    directory that is removed, as TensorFlow's multi-worker guide prescribes. The chief's files are
    replaced by rename, so a kill in the middle of a save leaves the previous epoch's backup whole.
    """
    import shutil
    import tempfile

    import keras

    class WorkerBackup(keras.callbacks.BackupAndRestore):
        resumed_epoch = 0

        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            self.resumed_epoch = int(getattr(self.model, "_initial_epoch", None) or 0)
            if self.resumed_epoch:
                log.info("resuming from the backup in %s after epoch %d", backup_dir, self.resumed_epoch)

        def _save_model(self):
            target = Path(backup_dir) if worker.is_chief else Path(tempfile.mkdtemp(prefix="kfkit-backup-"))
            try:
                target.mkdir(parents=True, exist_ok=True)
                self.model.save_weights(target / "next.weights.h5", overwrite=True)
                (target / "next.json").write_text(json.dumps({"epoch": self._current_epoch,
                                                              "batch": self._last_batch_seen}))
                os.replace(target / "next.weights.h5", target / "latest.weights.h5")
                os.replace(target / "next.json", target / "training_metadata.json")
            finally:
                if not worker.is_chief:
                    shutil.rmtree(target, ignore_errors=True)

        def on_train_end(self, logs=None):
            if worker.is_chief:
                shutil.rmtree(backup_dir, ignore_errors=True)

    return WorkerBackup(str(backup_dir))


def train(train_data: str | Path, eval_data: str | Path, statistics: dict[str, Any], schema: dict[str, Any],
          label: str, model_dir: str | Path | None, hp: Hyperparameters | None = None, task: str = "auto",
          exclude_columns: list[str] | None = None, tensorboard_dir: str | Path | None = None,
          categorical_columns: list[str] | None = None, callbacks: list | None = None,
          verbose: int = 2, checkpoint_dir: str | Path | None = None) -> TrainResult:
    """Train, early-stop on the eval split, and export the SavedModel to model_dir (atomically).

    model_dir None: nothing exported (a tuning trial wants only the metrics); callbacks: more Keras
    callbacks (a tuning trial's pruning); checkpoint_dir: where each epoch's state is backed up, so
    a restarted run resumes after its last finished epoch (removed once training ends).

    Under TF_CONFIG with several workers (MultiWorkerMirroredStrategy) every worker trains on its
    own share of the rows and all end with the same weights; only the chief writes model_dir,
    tensorboard_dir and checkpoint_dir, the others write into scratch directories they remove.
    """
    hp = (hp or Hyperparameters()).check()
    spec = build_spec(statistics, schema, label, task, exclude_columns, categorical_columns)
    check_columns(train_data, spec)
    check_columns(eval_data, spec)
    worker = worker_from_env()
    if hp.batch_size < worker.count:
        raise ConfigError(f"batch_size {hp.batch_size} is smaller than the {worker.count} workers: each needs rows")
    tf = _tf()
    import keras

    if hp.seed is not None:
        keras.utils.set_random_seed(hp.seed)
        tf.config.experimental.enable_op_determinism()
    started = time.perf_counter()
    strategy = strategy_from_env()
    with strategy.scope():
        model = build_model(spec, hp)
    shuffle_seed = hp.seed if hp.seed is not None else 0
    if worker.count > 1:
        _build_from_local_batch(model, strategy)
        steps = {"steps_per_epoch": -(-row_count(train_data) // hp.batch_size),
                 "validation_steps": -(-row_count(eval_data) // hp.batch_size)}
        train_set = distributed_dataset(strategy, train_data, spec, hp.batch_size, shuffle_seed)
        eval_set = distributed_dataset(strategy, eval_data, spec, hp.batch_size)
    else:
        steps = {}
        train_set = make_dataset(train_data, spec, hp.batch_size, shuffle_seed=shuffle_seed)
        eval_set = make_dataset(eval_data, spec, hp.batch_size)
    backup = backup_callback(checkpoint_dir, worker) if checkpoint_dir else None
    callbacks = [*([backup] if backup else []),
                 keras.callbacks.EarlyStopping(monitor="val_loss", patience=hp.patience, restore_best_weights=True),
                 *(callbacks or [])]
    scratch = []  # a non-chief worker's outputs, written (its part of any collective) and then removed
    tb_dir = os.environ.get("AIP_TENSORBOARD_LOG_DIR") or tensorboard_dir
    if tb_dir:
        if not worker.is_chief:
            tb_dir = _scratch(scratch)
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(tb_dir), histogram_freq=0))
    # Keras cannot know a generator's length before the first epoch ends and says so; harmless
    warnings.filterwarnings("ignore", message=".*ran out of data.*")
    warnings.filterwarnings("ignore", message=".*`shuffle=True` was passed.*")
    try:
        with _mean_over_workers() if worker.count > 1 else contextlib.nullcontext():
            history = model.fit(train_set, validation_data=eval_set, epochs=hp.epochs, callbacks=callbacks,
                                verbose=verbose, **steps)
        if model_dir is not None:
            target = model_dir if worker.is_chief else _scratch(scratch) / "model"
            with atomic_dir(target) as tmp:
                export(model, spec, tmp)
                # the training baseline travels with the model: the monitor compares serving traffic with it
                (tmp / "kfkit_statistics.json").write_text(json.dumps(statistics))
    finally:
        import shutil
        for directory in scratch:
            shutil.rmtree(directory, ignore_errors=True)
    hist = {k: [float(v) for v in values] for k, values in history.history.items()}
    best = min(range(len(hist["val_loss"])), key=hist["val_loss"].__getitem__)
    metrics = {f"{'eval' if k.startswith('val_') else 'train'}_{k.removeprefix('val_')}": values[best]
               for k, values in hist.items()}
    seconds = time.perf_counter() - started
    resumed = backup.resumed_epoch if backup else 0
    log.info("trained %s model on %d features in %.1fs (%d epochs, best %d) on %s", spec.task, len(spec.features),
             seconds, resumed + len(hist["loss"]), resumed + best + 1, ", ".join(accelerators()) or "CPU")
    if worker.count > 1:
        log.info("worker %d of %d%s", worker.index, worker.count, " (chief)" if worker.is_chief else "")
    return TrainResult(spec, hist, resumed + len(hist["loss"]), seconds, metrics, worker.is_chief, resumed)


def _scratch(scratch: list) -> Path:
    import tempfile

    scratch.append(Path(tempfile.mkdtemp(prefix="kfkit-worker-")))
    return scratch[-1]
