"""The train step as a Kubeflow TFJob: stage the inputs on shared storage, run the job, hand on its outputs.

The step's inputs are local copies in its own pod, which the replicas cannot see; so they are
copied under shared_dir (a ReadWriteMany volume mounted in the step at shared_dir and in every
replica at the same path), with a spec naming them. Each replica runs
`python -m kfkit.components.train.replica <spec>`; the chief writes the model and result.json there,
and the step copies the model to its own output. The job's name comes from the step's model output
path, so a retried step follows (or finds finished) the job it started.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from kfkit.atomic import atomic_dir, atomic_file
from kfkit.errors import ConfigError

REPLICA = ["python", "-m", "kfkit.components.train.replica"]


def tfjob_settings(env) -> dict[str, Any] | None:
    """The TFJob's placement from the step's environment, None unless KFKIT_TRAIN_BACKEND is tfjob.

    Where the step trains is deployment, not the model's recipe: it comes with the step's
    environment (`kfkit submit --step-env`), as MLFLOW_TRACKING_URI does, and leaves the
    component's interface alone.
      KFKIT_TRAIN_BACKEND        `step` (default: this pod) or `tfjob`
      KFKIT_TFJOB_WORKERS        workers besides the chief (default 1)
      KFKIT_TFJOB_GPUS           GPUs per replica (default 0)
      KFKIT_TFJOB_NAMESPACE      the TFJob's namespace (default: the step's own)
      KFKIT_TFJOB_IMAGE          the replicas' image (default: the trainer image of this kfkit)
      KFKIT_SHARED_DIR           where the step and the replicas mount the same storage
      KFKIT_SHARED_VOLUME_CLAIM  the ReadWriteMany claim mounted there in the replicas
    """
    from kfkit.config import trainer_image

    backend = env.get("KFKIT_TRAIN_BACKEND", "step") or "step"
    if backend == "step":
        return None
    if backend != "tfjob":
        raise ConfigError(f"KFKIT_TRAIN_BACKEND must be step or tfjob, got {backend!r}")
    try:
        workers, gpus = int(env.get("KFKIT_TFJOB_WORKERS", "1")), int(env.get("KFKIT_TFJOB_GPUS", "0"))
    except ValueError as exc:
        raise ConfigError(f"KFKIT_TFJOB_WORKERS and KFKIT_TFJOB_GPUS must be integers: {exc}") from exc
    return {"shared_dir": env.get("KFKIT_SHARED_DIR", ""), "volume_claim": env.get("KFKIT_SHARED_VOLUME_CLAIM", ""),
            "workers": workers, "image": env.get("KFKIT_TFJOB_IMAGE") or trainer_image(),
            "namespace": env.get("KFKIT_TFJOB_NAMESPACE", ""),
            "resources": {"limits": {"nvidia.com/gpu": str(gpus)}} if gpus > 0 else None}


def job_name(model_path: str) -> str:
    return "kfkit-train-" + hashlib.sha256(model_path.encode()).hexdigest()[:12]


def _stage(source: str, target: Path) -> str:
    """Copy a file or directory under the shared root once (a retried step finds it there)."""
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        if Path(source).is_dir():
            with atomic_dir(target) as tmp:
                shutil.copytree(source, tmp, dirs_exist_ok=True)
        else:
            with atomic_file(target, "wb") as f, open(source, "rb") as src:
                shutil.copyfileobj(src, f)
    return str(target)


def train_as_tfjob(*, inputs: dict[str, str], label: str, hp, task: str, exclude_columns: list[str],
                   categorical_columns: list[str], model_dir: str, tensorboard_dir: str, shared_dir: str,
                   volume_claim: str, workers: int, image: str, namespace: str = "",
                   resources: dict[str, Any] | None = None, adapter=None) -> dict[str, Any]:
    """Train on a TFJob of a chief and `workers` workers; the chief's result.json (metrics, task...)."""
    from kfkit.adapters.tfjob import TFJobAdapter, tf_job

    if not shared_dir:
        raise ConfigError("train_backend tfjob needs shared_dir: storage the step and every replica mount "
                          "(a ReadWriteMany volume)")
    name = job_name(model_dir)
    root = Path(shared_dir) / name
    paths = {key: _stage(inputs[key], root / "inputs" / key)
             for key in ("train_data", "eval_data", "statistics", "schema")}
    paths |= {"model": str(root / "model"), "tensorboard": str(root / "tensorboard"),
              "checkpoints": str(root / "checkpoints"), "result": str(root / "result.json")}
    spec = {"paths": paths, "label": label, "hyperparameters": dataclasses.asdict(hp), "task": task,
            "exclude_columns": list(exclude_columns), "categorical_columns": list(categorical_columns)}
    with atomic_file(root / "train.json") as f:
        json.dump(spec, f)
    if not (root / "result.json").exists():  # a retried step whose job had finished goes straight on
        adapter = adapter or TFJobAdapter(namespace)
        body = tf_job(name, adapter.namespace, image, [*REPLICA, str(root / "train.json")], workers=workers,
                      resources=resources, volume_claim=volume_claim, mount_path=shared_dir if volume_claim else "",
                      labels={"app.kubernetes.io/created-by": "kfkit"})
        adapter.run(body)
    result = json.loads((root / "result.json").read_text())
    with atomic_dir(model_dir) as tmp:
        shutil.copytree(root / "model", tmp, dirs_exist_ok=True)
    if (root / "tensorboard").exists():
        shutil.copytree(root / "tensorboard", tensorboard_dir, dirs_exist_ok=True)
    return result
