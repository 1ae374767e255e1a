"""KFP wrapper of the tuning stage."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from kfkit.config import trainer_image
from kfkit.interfaces import stamped


@stamped
@dsl.component(base_image=trainer_image(), install_kfp_package=False)
def tune_hyperparameters(
    train_data: Input[Dataset],
    eval_data: Input[Dataset],
    statistics: Input[Artifact],
    schema: Input[Artifact],
    label_column: str,
    search_space: str,
    metrics: Output[Metrics],
    report: Output[HTML],
    gcp_resources: dsl.OutputPath(str),
    metric: str = "eval_loss",
    goal: str = "minimize",
    max_trials: int = 20,
    parallelism: int = 1,
    task: str = "auto",
    hidden_units: list = [64, 32],
    learning_rate: float = 0.01,
    epochs: int = 30,
    batch_size: int = 64,
    patience: int = 5,
    dropout: float = 0.0,
    seed: int = 42,
    exclude_columns: list = [],
    categorical_columns: list = [],
    backend: str = "local",
    project: str = "",
    location: str = "us-central1",
    machine_type: str = "n1-standard-4",
    study_name: str = "",
    local_root: str = ".kfkit",
) -> NamedTuple("Outputs", [("hidden_units", list), ("learning_rate", float), ("epochs", int), ("batch_size", int),
                            ("patience", int), ("dropout", float)]):
    """Searches train's hyperparameters for the best eval metric and hands the best to train.

    Args:
        train_data: Training split, as train takes it.
        eval_data: Evaluation split: every trial is judged on it.
        statistics: Training statistics from validate.
        schema: Schema from validate.
        label_column: Column to predict.
        search_space: YAML or JSON, one entry per hyperparameter of train to vary (hidden_units,
            learning_rate, epochs, batch_size, patience, dropout): `{type: float|int, low, high,
            log}` or `{type: categorical, choices: [...]}` (hidden_units: lists of layer widths).
        metric: Objective, train's metric on the eval split: eval_loss, eval_accuracy (classifiers)
            or eval_mae (regressors).
        goal: `minimize` or `maximize` the metric.
        max_trials: Trials in all (a resumed study counts the trials it already finished).
        parallelism: Trials at once: processes on this machine (at most its cores), or Vertex's
            parallel trials.
        task: As train's.
        hidden_units: Base value, used where the search space does not vary it; likewise
            learning_rate, epochs, batch_size, patience, dropout and seed.
        learning_rate: Base value (see hidden_units).
        epochs: Base value; most epochs per trial.
        batch_size: Base value.
        patience: Base value.
        dropout: Base value.
        seed: Random seed of every trial's training and of the sampler.
        exclude_columns: As train's.
        categorical_columns: As train's.
        backend: `local` (Optuna: TPE sampling, median pruning, trials in processes here, history
            under local_root/tuning) or `vertex`/`bigquery` (a Vertex AI HyperparameterTuningJob,
            Vizier, trials in kfkit's trainer image).
        project: Google Cloud project (vertex).
        location: Vertex AI region (vertex).
        machine_type: Machine type of each trial (vertex).
        study_name: Study to create or resume (local); default: a digest of the space, objective,
            base values and the data's statistics, so the same tuning on the same data resumes.
        local_root: Directory of the embedded backend's state.

    Returns:
        metrics: The best value, the trial counts by state, and the best hyperparameters.
        report: Every trial (table and parallel-coordinates plot) and the chosen values.
        gcp_resources: The Vertex AI tuning job (GCPC's GcpResources JSON); empty on local.
        hidden_units: Best value (the base value where not tuned); likewise learning_rate, epochs,
            batch_size, patience and dropout: wire them into train.
    """
    import collections
    import logging
    import os

    from kfkit.components.tune.stage import run_tuning

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    base = {"hidden_units": [int(u) for u in hidden_units], "learning_rate": learning_rate, "epochs": epochs,
            "batch_size": batch_size, "patience": patience, "dropout": dropout, "seed": seed if seed >= 0 else None}
    result = run_tuning(
        paths={"train_data": train_data.path, "eval_data": eval_data.path, "statistics": statistics.path,
               "schema": schema.path, "label": label_column, "task": task, "exclude_columns": list(exclude_columns),
               "categorical_columns": list(categorical_columns)},
        search_space=search_space, base=base, metric=metric, goal=goal, max_trials=max_trials,
        parallelism=parallelism, backend=backend, project=project, location=location, machine_type=machine_type,
        study_name=study_name, local_root=local_root, config_dir=os.path.dirname(report.path),
        gcp_resources=gcp_resources, report_path=report.path)
    metrics.log_metric(f"best_{result.metric}", result.best_value)
    for state in ("COMPLETE", "PRUNED", "FAIL"):
        metrics.log_metric(f"trials_{state.lower()}", sum(t.state == state for t in result.trials))
    metrics.metadata.update(best=result.best, study=result.study_name, library=result.library)
    best = result.best
    return collections.namedtuple("Outputs", ["hidden_units", "learning_rate", "epochs", "batch_size", "patience",
                                              "dropout"])(
        best["hidden_units"], best["learning_rate"], best["epochs"], best["batch_size"], best["patience"],
        best["dropout"])
