"""KFP wrapper of the train stage."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from kfkit.config import trainer_image
from kfkit.interfaces import stamped


@stamped
@dsl.component(base_image=trainer_image(), install_kfp_package=False)
def train_tensorflow_model(
    train_data: Input[Dataset],
    eval_data: Input[Dataset],
    statistics: Input[Artifact],
    schema: Input[Artifact],
    label_column: str,
    model: Output[Model],
    metrics: Output[Metrics],
    tensorboard_logs: Output[Artifact],
    task: str = "auto",
    hidden_units: list = [64, 32],
    learning_rate: float = 0.01,
    epochs: int = 30,
    batch_size: int = 64,
    patience: int = 5,
    seed: int = 42,
    dropout: float = 0.0,
    exclude_columns: list = [],
    categorical_columns: list = [],
):
    """Trains a Keras (TensorFlow) model with all preprocessing inside it and exports a SavedModel.

    Args:
        train_data: Training split (Parquet shards), streamed through tf.data.
        eval_data: Evaluation split, for early stopping.
        statistics: Training statistics from validate (normalization and vocabularies).
        schema: Schema from validate (which columns are features, and their kinds).
        label_column: Column to predict.
        task: `auto` (from the label's type), `binary`, `multiclass` or `regression`.
        hidden_units: Width of each hidden layer.
        learning_rate: Adam learning rate.
        epochs: Most epochs; training stops early when eval loss stops improving.
        batch_size: Rows per training step, all workers together (each takes its share).
        patience: Epochs without improvement before early stopping.
        seed: Random seed; the same data and seed give the same model. Negative: unseeded.
        dropout: Share of each hidden layer's units dropped while training (0: none).
        exclude_columns: Columns that are not features (ids, timestamps).
        categorical_columns: Integer columns that are codes, not quantities (hour, area id): one-hot
            or embedded through IntegerLookup instead of normalized.

    Returns:
        model: SavedModel (`model.export`) taking raw column values; metadata names the framework,
            its version, the input signature, the label, the task and the classes.
        metrics: Training and eval loss/metric at the best epoch (a regressor's mae: in the label's units).
        tensorboard_logs: TensorBoard log directory (Vertex TensorBoard can read it).
    """
    import json
    import logging
    import os

    from kfkit.components.train.train import Hyperparameters, train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    hp = Hyperparameters(hidden_units=[int(u) for u in hidden_units], learning_rate=learning_rate, epochs=epochs,
                         batch_size=batch_size, patience=patience, seed=seed if seed >= 0 else None,
                         dropout=dropout)
    with open(statistics.path) as f:
        stats = json.load(f)
    with open(schema.path) as f:
        schema_json = json.load(f)
    from kfkit.components.train.tfjob import tfjob_settings, train_as_tfjob

    on_tfjob = tfjob_settings(os.environ)  # KFKIT_TRAIN_BACKEND=tfjob, set with `kfkit submit --step-env`
    if on_tfjob:
        done = train_as_tfjob(
            inputs={"train_data": train_data.path, "eval_data": eval_data.path, "statistics": statistics.path,
                    "schema": schema.path}, label=label_column, hp=hp, task=task, exclude_columns=exclude_columns,
            categorical_columns=categorical_columns, model_dir=model.path, tensorboard_dir=tensorboard_logs.path,
            **on_tfjob)
        signature, trained_task, classes = done["signature"], done["task"], done["classes"]
        epochs_run, trained_metrics, seconds = done["epochs_run"], done["metrics"], done["seconds"]
    else:
        # beside the step's outputs (on Vertex, /gcs/...): a worker restarted after a preemption finds
        # the backup of the last finished epoch there and resumes; removed once training ends
        result = train(train_data.path, eval_data.path, stats, schema_json, label_column, model.path, hp, task,
                       exclude_columns, tensorboard_dir=tensorboard_logs.path, categorical_columns=categorical_columns,
                       checkpoint_dir=os.path.join(os.path.dirname(model.path), "checkpoints"))
        signature, trained_task, classes = result.spec.signature, result.spec.task, result.spec.classes
        epochs_run, trained_metrics, seconds = result.epochs_run, result.metrics, result.seconds
    import tensorflow as tf

    model.metadata.update({"framework": "tensorflow", "framework_version": tf.__version__,
                           "format": "saved_model", "signature": signature,
                           "label": label_column, "task": trained_task, "classes": classes,
                           "epochs_run": epochs_run,
                           "hyperparameters": {"hidden_units": hp.hidden_units, "learning_rate": hp.learning_rate,
                                               "epochs": hp.epochs, "batch_size": hp.batch_size,
                                               "patience": hp.patience, "dropout": hp.dropout, "seed": seed}})
    # every worker of a multi-worker job reports the same figures (its logs are averaged over all
    # workers), so whichever worker's executor output lands last, the step's metadata is the same
    for name, value in trained_metrics.items():
        metrics.log_metric(name, value)
    metrics.log_metric("training_seconds", seconds)

    from kfkit import quick_exit

    quick_exit.after_success()  # skip TensorFlow's and MLflow's second of teardown
