"""A model's training recipe: every parameter of the training pipeline run that made it.

register writes the recipe (`kfkit_training_config.json`) into the model directory before the
model is registered, so it travels with the version on both backends; the monitoring pipeline's
retrain reads the champion's recipe back (`champion_recipe`) and trains with it, with the
monitoring run's own environment (backend, project, root, names) and any overrides on top.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from kfkit.atomic import atomic_file
from kfkit.config import local_path
from kfkit.errors import ConfigError

log = logging.getLogger("kfkit.recipe")
RECIPE_FILE = "kfkit_training_config.json"

# One line: KFP copies defaults into a comment header of the compiled YAML, and a newline there
# makes the template unreadable to the Vertex SDK.
PENGUINS_QUERY = (
    "SELECT species, island, culmen_length_mm, culmen_depth_mm, flipper_length_mm, body_mass_g, sex "
    "FROM `bigquery-public-data.ml_datasets.penguins` "
    "WHERE species IS NOT NULL AND body_mass_g IS NOT NULL"
)

# tune=true's default search space, one line (as PENGUINS_QUERY): learning rate, layers, dropout
DEFAULT_SEARCH_SPACE = (
    '{"learning_rate": {"type": "float", "low": 0.0003, "high": 0.1, "log": true}, '
    '"hidden_units": {"type": "categorical", "choices": [[32], [64, 32], [128, 64]]}, '
    '"dropout": {"type": "float", "low": 0.0, "high": 0.4}}'
)

# The training pipeline's parameters and defaults, in its order (a test checks they are the
# pipeline's own): what a retrain uses where a model has no recorded recipe. Kept here, not read
# from the pipeline, because component steps run without the KFP SDK's pipeline DSL.
TRAINING_DEFAULTS: dict[str, Any] = {
    "query": PENGUINS_QUERY, "label_column": "species", "query_parameters": {}, "backend": "local", "project": "",
    "location": "US", "split_key": "*", "train_fraction": 0.8, "eval_fraction": 0.1, "test_fraction": 0.1,
    "local_root": ".kfkit", "schema_uri": "", "unseen_tolerance": 0.01, "task": "auto", "hidden_units": [64, 32],
    "learning_rate": 0.01, "epochs": 30, "batch_size": 64, "seed": 42, "exclude_columns": [],
    "categorical_columns": [], "champion_model_uri": "", "min_accuracy": 0.8, "min_roc_auc": 0.0,
    "max_log_loss": 0.0, "max_rmse": 0.0, "tolerance": 0.01, "model_name": "penguins", "endpoint_name": "penguins",
    "region": "us-central1", "traffic_percent": 100, "keep_previous": 1, "serving_image": "",
    "machine_type": "n1-standard-2", "request_logging_table": "", "git_commit": "",
    "maximum_bytes_billed": 1_000_000_000_000, "endpoint_backend": "", "namespace": "", "model_storage_uri": "",
    "serving_service_account": "", "request_logger_url": "", "prometheus_url": "", "canary_window_seconds": 600.0,
    "canary_min_requests": 100,
    "canary_on_inconclusive": "keep", "dropout": 0.0, "tune": False, "search_space": DEFAULT_SEARCH_SPACE,
    "tune_metric": "eval_loss", "tune_goal": "minimize", "tune_max_trials": 20, "tune_parallelism": 1,
    "slicing_specs": "", "slice_min_examples": 0, "explain": False,
}


def training_defaults() -> dict[str, Any]:
    """A copy of the training pipeline's parameters with their defaults."""
    return json.loads(json.dumps(TRAINING_DEFAULTS))


def write_recipe(model_dir: str | Path, config: dict[str, Any]) -> Path:
    path = Path(local_path(str(model_dir))) / RECIPE_FILE
    with atomic_file(path) as handle:
        json.dump(config, handle, indent=1, sort_keys=True)
    return path


def read_recipe(model_dir: str | Path) -> dict[str, Any] | None:
    path = Path(local_path(str(model_dir))) / RECIPE_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text())


def champion_recipe(model_name: str, *, backend: str = "local", local_root: str | None = None, project: str = "",
                    location: str = "", environment: dict[str, Any] | None = None,
                    overrides: dict[str, Any] | None = None, registry=None, vertex=None) -> dict[str, Any]:
    """The champion's recipe over the training defaults, then `environment`, then `overrides`."""
    from kfkit.components.register.register import champion_model_dir

    defaults = training_defaults()
    unknown = sorted(set(overrides or {}) - set(defaults))
    if unknown:
        raise ConfigError(f"retrain override(s) {', '.join(unknown)} are not training pipeline parameters; "
                          f"they are: {', '.join(sorted(defaults))}")
    registry_backend = "vertex" if backend in ("vertex", "bigquery") else "local"
    model_dir = champion_model_dir(model_name, registry_backend, local_root, project, location, registry=registry,
                                   vertex=vertex)
    recorded = read_recipe(model_dir) if model_dir else None
    if recorded is None:
        log.warning("model %r has no recorded training recipe (no champion, or registered before kfkit 0.4): "
                    "retraining with the training pipeline's defaults", model_name)
        recorded = {}
    recipe = {**defaults, **{k: v for k, v in recorded.items() if k in defaults}}
    recipe.update({k: v for k, v in (environment or {}).items() if k in defaults})
    recipe.update(overrides or {})
    return recipe
