"""The same search space as a Vertex AI HyperparameterTuningJob (Vizier), trials in kfkit's trainer image.

Vertex samples the trials (its default search algorithm, Bayesian optimization) and runs each as a
CustomJob: `python -m kfkit.components.tune.trial --config <this step's trial_config.json>` plus
`--<name>=<value>` per hyperparameter. The trials read the step's inputs through /gcs/, where Vertex
mounts Cloud Storage in pipeline steps and custom jobs alike; a path outside it is refused (a trial
could not see it). The best SUCCEEDED trial's values become the step's outputs, as locally.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from kfkit.components.tune.space import Dimension, decode
from kfkit.components.tune.tune import Trial, TuneResult
from kfkit.errors import ConfigError

TRIAL_COMMAND = ["python", "-m", "kfkit.components.tune.trial", "--config"]


def staging_directory(config_dir: str) -> str:
    """Where the trials' CustomJob stages its outputs: beside their config, under the pipeline root
    (/gcs/BUCKET/... is gs://BUCKET/...)."""
    return "gs://" + str(config_dir).removeprefix("/gcs/").rstrip("/") + "/trials"


def write_config(path: str, config: dict[str, Any]) -> None:
    """The trials' config, through the step's /gcs/ mount."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(config, default=list))


def tune_on_vertex(paths: dict[str, Any], space: list[Dimension], *, base: dict[str, Any], metric: str, goal: str,
                   max_trials: int, parallelism: int, project: str, location: str, machine_type: str,
                   image_uri: str, config_dir: str, display_name: str, labels: dict[str, str] | None = None,
                   gcp_resources: str | None = None, vertex=None) -> TuneResult:
    """paths: train_data, eval_data, statistics and schema files (under /gcs/), label, task,
    exclude_columns, categorical_columns."""
    from kfkit.cloud_jobs import CloudJobs

    for key in ("train_data", "eval_data", "statistics", "schema"):
        if not str(paths[key]).startswith("/gcs/"):
            raise ConfigError(f"{key} is at {paths[key]}: Vertex AI tuning trials read their inputs through /gcs/ "
                              "(Cloud Storage), so the tune step must run in a Vertex AI pipeline, or use backend local")
    if not str(config_dir).startswith("/gcs/"):
        raise ConfigError(f"the trial config would be written to {config_dir}, which trials cannot read: not under /gcs/")
    config_path = f"{str(config_dir).rstrip('/')}/trial_config.json"
    write_config(config_path, {"inputs": paths, "space": [d.__dict__ for d in space], "base": base, "metric": metric})
    if vertex is None:
        from kfkit.adapters.vertex import VertexAdapter

        vertex = VertexAdapter(project, location, jobs=CloudJobs(gcp_resources))
    started = time.perf_counter()
    with vertex.jobs:
        trials = vertex.run_tuning_job(display_name=display_name, image_uri=image_uri,
                                       command=TRIAL_COMMAND + [str(config_path)], metric=metric, goal=goal,
                                       space=space, max_trials=max_trials, parallelism=parallelism,
                                       machine_type=machine_type, labels=labels,
                                       staging_bucket=staging_directory(config_dir))
    records = []
    for trial in trials:
        state = {"SUCCEEDED": "COMPLETE", "STOPPING": "PRUNED", "INFEASIBLE": "FAIL"}.get(trial["state"], trial["state"])
        params = {name: decode(name, value) for name, value in trial["parameters"].items()}
        records.append(Trial(int(trial["id"]) if str(trial["id"]).isdigit() else len(records), state, params,
                             trial["value"], None, None))
    complete = [t for t in records if t.state == "COMPLETE" and t.value is not None]
    if not complete:
        raise ConfigError(f"Vertex AI tuning job {display_name}: no trial succeeded with a {metric} "
                          f"({', '.join(f'{t.number}: {t.state}' for t in records) or 'no trials'})")
    best = (min if goal == "minimize" else max)(complete, key=lambda t: t.value)
    chosen = {**base, **best.params}
    chosen.pop("seed", None)
    return TuneResult(chosen, float(best.value), best.number, metric, goal, records, display_name,
                      vertex.jobs.resources[0]["resourceUri"] if vertex.jobs.resources else "",
                      time.perf_counter() - started, library="vertex-vizier")
