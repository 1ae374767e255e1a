"""KFP wrapper of the recipe stage: the champion's training recipe, one typed output per parameter."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from kfkit.components.recipe.recipe import TRAINING_DEFAULTS
from kfkit.config import runtime_image
from kfkit.interfaces import stamped

# The training pipeline's parameters: a recipe holds one value for each.
RECIPE_PARAMETERS = tuple(TRAINING_DEFAULTS)


@stamped
@dsl.component(base_image=runtime_image(), install_kfp_package=False)
def champion_recipe(
    model_name: str = "penguins",
    backend: str = "local",
    project: str = "",
    location: str = "US",
    region: str = "us-central1",
    local_root: str = ".kfkit",
    endpoint_name: str = "",
    overrides: dict = {},
) -> NamedTuple("Recipe", [
    ("query", str),
    ("label_column", str),
    ("query_parameters", dict),
    ("backend", str),
    ("project", str),
    ("location", str),
    ("split_key", str),
    ("train_fraction", float),
    ("eval_fraction", float),
    ("test_fraction", float),
    ("local_root", str),
    ("schema_uri", str),
    ("unseen_tolerance", float),
    ("task", str),
    ("hidden_units", list),
    ("learning_rate", float),
    ("epochs", int),
    ("batch_size", int),
    ("seed", int),
    ("exclude_columns", list),
    ("categorical_columns", list),
    ("champion_model_uri", str),
    ("min_accuracy", float),
    ("min_roc_auc", float),
    ("max_log_loss", float),
    ("max_rmse", float),
    ("tolerance", float),
    ("model_name", str),
    ("endpoint_name", str),
    ("region", str),
    ("traffic_percent", int),
    ("keep_previous", int),
    ("serving_image", str),
    ("machine_type", str),
    ("request_logging_table", str),
    ("git_commit", str),
    ("maximum_bytes_billed", int),
    ("endpoint_backend", str),
    ("namespace", str),
    ("model_storage_uri", str),
    ("serving_service_account", str),
    ("request_logger_url", str),
    ("prometheus_url", str),
    ("canary_window_seconds", float),
    ("canary_min_requests", int),
    ("canary_on_inconclusive", str),
    ("dropout", float),
    ("tune", bool),
    ("search_space", str),
    ("tune_metric", str),
    ("tune_goal", str),
    ("tune_max_trials", int),
    ("tune_parallelism", int),
    ("slicing_specs", str),
    ("slice_min_examples", int),
    ("explain", bool),
]):
    """Reads the training recipe recorded with the model holding the `champion` alias.

    Every training pipeline run records all its parameters with the model it registers; a retrain
    that reuses them trains the model the champion was, on new data, not a model with defaults.

    Args:
        model_name: Registered model whose champion's recipe is read.
        backend: `local` (MLflow registry) or `vertex`/`bigquery` (Vertex AI Model Registry); also
            the backend the retrain runs on.
        project: Google Cloud project (vertex backend); also the retrain's project.
        location: BigQuery location of the retrain's query.
        region: Vertex AI region of the registry (vertex backend); also the retrain's region.
        local_root: Directory of the embedded backend's state; also the retrain's.
        endpoint_name: Endpoint the retrained model deploys to; empty: the recipe's.
        overrides: Training parameters to change for the retrain, e.g. {"epochs": 50}; a name
            that is not a training parameter is an error.

    Returns:
        One output per training pipeline parameter, typed as the pipeline declares it: the
        recipe (training defaults < the champion's recorded run < this run's environment < overrides).
    """
    import collections
    import json
    import logging

    from kfkit.components.recipe.recipe import champion_recipe as read, training_defaults

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    environment = {"backend": backend, "project": project, "location": location, "region": region,
                   "local_root": local_root, "model_name": model_name}
    if endpoint_name:
        environment["endpoint_name"] = endpoint_name
    recipe = read(model_name, backend=backend, local_root=local_root, project=project, location=region,
                  environment=environment, overrides=overrides)
    logging.getLogger("kfkit.recipe").info("retraining with: %s", json.dumps(recipe, sort_keys=True))
    names = list(training_defaults())
    return collections.namedtuple("Recipe", names)(*(recipe[name] for name in names))


@stamped
@dsl.component(base_image=runtime_image(), install_kfp_package=False)
def record_recipe(
    model: Input[Model],
    recipe: Output[Artifact],
    query: str,
    label_column: str,
    query_parameters: dict,
    backend: str,
    project: str,
    location: str,
    split_key: str,
    train_fraction: float,
    eval_fraction: float,
    test_fraction: float,
    local_root: str,
    schema_uri: str,
    unseen_tolerance: float,
    task: str,
    hidden_units: list,
    learning_rate: float,
    epochs: int,
    batch_size: int,
    seed: int,
    exclude_columns: list,
    categorical_columns: list,
    champion_model_uri: str,
    min_accuracy: float,
    min_roc_auc: float,
    max_log_loss: float,
    max_rmse: float,
    tolerance: float,
    model_name: str,
    endpoint_name: str,
    region: str,
    traffic_percent: int,
    keep_previous: int,
    serving_image: str,
    machine_type: str,
    request_logging_table: str,
    git_commit: str,
    maximum_bytes_billed: int,
    endpoint_backend: str,
    namespace: str,
    model_storage_uri: str,
    serving_service_account: str,
    request_logger_url: str,
    prometheus_url: str,
    canary_window_seconds: float,
    canary_min_requests: int,
    canary_on_inconclusive: str,
    dropout: float,
    tune: bool,
    search_space: str,
    tune_metric: str,
    tune_goal: str,
    tune_max_trials: int,
    tune_parallelism: int,
    slicing_specs: str = "",
    slice_min_examples: int = 0,
    explain: bool = False,
):
    """Records a training run's recipe (every training pipeline parameter) with its model.

    Runs before register, so the recipe travels with the registered version on both backends: it
    is written into the model directory as kfkit_training_config.json (and as this step's `recipe`
    artifact, for lineage). champion_recipe reads it back for a retrain.

    Args:
        model: The trained model the recipe belongs to.
        query: And every other training pipeline parameter (label_column ... explain), as this
            run had them; see the training pipeline for each one's meaning.
        slicing_specs: As the training pipeline's (added in 0.11; a recipe recorded before has none).
        slice_min_examples: As the training pipeline's.
        explain: As the training pipeline's.

    Returns:
        recipe: The recipe as JSON.
    """
    import json

    from kfkit.components.recipe.recipe import write_recipe

    config = dict(
        query=query, label_column=label_column, query_parameters=query_parameters, backend=backend, project=project,
        location=location, split_key=split_key, train_fraction=train_fraction, eval_fraction=eval_fraction,
        test_fraction=test_fraction, local_root=local_root, schema_uri=schema_uri, unseen_tolerance=unseen_tolerance,
        task=task, hidden_units=hidden_units, learning_rate=learning_rate, epochs=epochs, batch_size=batch_size,
        seed=seed, exclude_columns=exclude_columns, categorical_columns=categorical_columns,
        champion_model_uri=champion_model_uri, min_accuracy=min_accuracy, min_roc_auc=min_roc_auc,
        max_log_loss=max_log_loss, max_rmse=max_rmse, tolerance=tolerance, model_name=model_name,
        endpoint_name=endpoint_name, region=region, traffic_percent=traffic_percent, keep_previous=keep_previous,
        serving_image=serving_image, machine_type=machine_type, request_logging_table=request_logging_table,
        git_commit=git_commit, maximum_bytes_billed=maximum_bytes_billed, endpoint_backend=endpoint_backend,
        namespace=namespace, model_storage_uri=model_storage_uri, serving_service_account=serving_service_account,
        request_logger_url=request_logger_url, prometheus_url=prometheus_url,
        canary_window_seconds=canary_window_seconds, canary_min_requests=canary_min_requests,
        canary_on_inconclusive=canary_on_inconclusive, dropout=dropout, tune=tune, search_space=search_space,
        tune_metric=tune_metric, tune_goal=tune_goal, tune_max_trials=tune_max_trials,
        tune_parallelism=tune_parallelism, slicing_specs=slicing_specs, slice_min_examples=slice_min_examples,
        explain=explain)
    write_recipe(model.path, config)
    with open(recipe.path, "w") as handle:
        json.dump(config, handle, indent=1, sort_keys=True)

    from kfkit import quick_exit

    # forked from a local run's zygote, this process holds TensorFlow and MLflow too: skip their
    # second of teardown
    quick_exit.after_success()
