"""The tuning stage: the search space and objective checked, the study run on the chosen backend, the
report written. The KFP wrapper (component.py) only moves artifacts in and outputs out."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from kfkit.components.tune.space import parse_space
from kfkit.components.tune.tune import TrainingInputs, TuneResult, check_objective, tune_local
from kfkit.errors import ConfigError

BACKENDS = ("local", "vertex", "bigquery")


def run_tuning(*, paths: dict[str, Any], search_space: str, base: dict[str, Any], metric: str = "eval_loss",
               goal: str = "minimize", max_trials: int = 20, parallelism: int = 1, backend: str = "local",
               project: str = "", location: str = "", machine_type: str = "n1-standard-4", study_name: str = "",
               local_root: str | None = None, config_dir: str = "", gcp_resources: str | None = None,
               report_path: str | None = None, vertex=None) -> TuneResult:
    """paths: train_data, eval_data, statistics and schema files, label, task, exclude_columns,
    categorical_columns."""
    from kfkit.cloud_jobs import CloudJobs
    from kfkit.components.train.train import Hyperparameters
    from kfkit.components.tune.report import render

    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    dims = parse_space(search_space)
    check_objective(metric, goal)
    if max_trials < 1 or parallelism < 1:
        raise ConfigError(f"max_trials and parallelism must be >= 1, got {max_trials} and {parallelism}")
    base = dataclasses.asdict(Hyperparameters(**base).check())
    if backend == "local":
        CloudJobs(gcp_resources)  # no Google Cloud job: an empty gcp_resources
        inputs = TrainingInputs(paths["train_data"], paths["eval_data"],
                                json.loads(Path(paths["statistics"]).read_text()),
                                json.loads(Path(paths["schema"]).read_text()), paths["label"], paths.get("task", "auto"),
                                list(paths.get("exclude_columns", [])), list(paths.get("categorical_columns", [])))
        result = tune_local(inputs, dims, base=base, metric=metric, goal=goal, max_trials=max_trials,
                            parallelism=parallelism, study_name=study_name, local_root=local_root, seed=base["seed"])
    else:
        from kfkit.components.tune.vertex import tune_on_vertex
        from kfkit.config import trainer_image

        result = tune_on_vertex(paths, dims, base=base, metric=metric, goal=goal, max_trials=max_trials,
                                parallelism=parallelism, project=project, location=location,
                                machine_type=machine_type, image_uri=trainer_image(), config_dir=config_dir,
                                display_name=study_name or "kfkit-tune", gcp_resources=gcp_resources, vertex=vertex)
    if report_path:
        from kfkit.atomic import atomic_file

        with atomic_file(report_path) as handle:
            handle.write(render(result, dims))
    return result
