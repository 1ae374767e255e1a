"""Local model registry and tracking on MLflow with a SQLite store under the local root.

The only module that talks to MLflow. Versions carry the same aliases as on Vertex AI
(`challenger` on registration, `champion` when blessed) and a tag with the pipeline task id that
makes a retried registration find the version it already created.

See the runs and models with: mlflow ui --backend-store-uri sqlite:///.kfkit/mlflow.db

With MLFLOW_TRACKING_URI set to a tracking server (`mlflow server`, http:// or https://), every
step, on this machine or another, registers to and reads from that one server instead; models it
serves are copied once into <local root>/cache/mlflow/<name>/<version>.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfkit import __version__
from kfkit.config import local_root
from kfkit.errors import ConfigError

log = logging.getLogger("kfkit.registry")
# a progress bar per artifact download clutters pipeline logs; set the variable to true to see them
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# with a tracking server MLflow prints each run's URL to stdout; the run's outcome names it once
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
EXPERIMENT = "kfkit"
TASK_TAG = "kfkit.task_id"


@dataclass
class RegisteredVersion:
    name: str
    version: str
    model_dir: str
    run_id: str
    aliases: list[str]
    created: bool

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def tracking_uri(root: str | Path | None = None) -> str:
    """MLFLOW_TRACKING_URI where it names a tracking server, else the SQLite store under the local root.

    Only a server counts: MLflow itself writes the variable when a process sets its tracking URI,
    so a file store found there may be another local root's.
    """
    shared = os.environ.get("MLFLOW_TRACKING_URI", "")
    return shared if is_server(shared) else f"sqlite:///{local_root(root) / 'mlflow.db'}"


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


class MlflowRegistry:
    def __init__(self, root: str | Path | None = None, uri: str | None = None):
        import mlflow
        from mlflow import MlflowClient

        self.root = local_root(root)
        self.uri = uri or tracking_uri(self.root)
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        self.mlflow = mlflow
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def experiment_id(self, name: str = EXPERIMENT) -> str:
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        if is_server(self.uri):  # the server's own artifact store, reachable from every step
            return self.client.create_experiment(name)
        # artifacts beside the database, not in ./mlruns of whatever directory a step runs in
        location = (self.root / "mlartifacts" / name).as_uri()
        return self.client.create_experiment(name, artifact_location=location)

    def find_by_task(self, name: str, task_id: str):
        if not task_id:
            return None
        for version in self.client.search_model_versions(f"name = '{name}'"):
            if version.tags.get(TASK_TAG) == task_id:
                return version
        return None

    def _model_dir(self, version) -> str:
        # pyfunc artifacts keep their source directory's name: find the kfkit model inside
        base = self._artifacts(version)
        root = base / "artifacts"
        found = sorted(root.glob("*/kfkit_model.json")) or sorted(base.glob("*/artifacts/*/kfkit_model.json"))
        if not found:
            raise ConfigError(f"registered model {version.name} version {version.version} has no kfkit SavedModel under {root}")
        return str(found[0].parent)

    def _artifacts(self, version) -> Path:
        """The version's logged model as a directory here: in place for a local store, else a kept copy."""
        if not is_server(self.uri):
            return Path(self.mlflow.artifacts.download_artifacts(artifact_uri=version.source))
        cached = self.root / "cache" / "mlflow" / version.name / str(version.version)
        if not cached.exists():  # a version never changes: download it once, whole or not at all
            from kfkit.atomic import atomic_dir

            with atomic_dir(cached) as staging:
                self.mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=str(staging))
        return cached

    def register(self, name: str, model_dir: str | Path, *, aliases: list[str], params: dict[str, Any] | None = None,
                 metrics: dict[str, float] | None = None, tags: dict[str, str] | None = None,
                 task_id: str = "") -> RegisteredVersion:
        """Log a run with the parameters and metrics, and the SavedModel as a new model version."""
        existing = self.find_by_task(name, task_id)
        if existing is not None:
            log.info("task %s already registered %s version %s; reusing it", task_id, name, existing.version)
            self._set_aliases(name, existing.version, aliases)
            return RegisteredVersion(name, str(existing.version), self._model_dir(existing), existing.run_id,
                                     aliases, created=False)
        from kfkit.serving.mlflow_pyfunc import KfkitSavedModel

        tags = {**(tags or {}), **({TASK_TAG: task_id} if task_id else {})}
        with self.mlflow.start_run(experiment_id=self.experiment_id(), run_name=f"{name}-register") as run:
            self.mlflow.log_params({k: str(v)[:500] for k, v in (params or {}).items()})
            self.mlflow.log_metrics({k: float(v) for k, v in (metrics or {}).items()})
            self.mlflow.set_tags(tags)
            # naming the requirements skips MLflow's slow inference of them (seconds per model)
            info = self.mlflow.pyfunc.log_model(name="model", python_model=KfkitSavedModel(),
                                                artifacts={"saved_model": str(model_dir)},
                                                pip_requirements=[f"kfkit=={__version__}"])
        try:
            self.client.get_registered_model(name)
        except Exception:  # noqa: BLE001 - MLflow raises its own RestException when missing
            self.client.create_registered_model(name, tags={"created-by": "kfkit"})
        # a tracking server checks that the source belongs to the logged model it names
        version = self.client.create_model_version(name, info.model_uri, run_id=run.info.run_id, tags=tags,
                                                   model_id=info.model_id)
        self._set_aliases(name, version.version, aliases)
        registered = self.client.get_model_version(name, version.version)
        return RegisteredVersion(name, str(version.version), self._model_dir(registered), run.info.run_id,
                                 aliases, created=True)

    def track_pipeline_run(self, pipeline: str, run_name: str, *, params: dict[str, Any], metrics: dict[str, float],
                           tags: dict[str, str], artifacts: list[Path],
                           registered: tuple[str, str] | None = None, started: float | None = None,
                           ended: float | None = None, failed: bool = False) -> tuple[str, str]:
        """One MLflow run per pipeline run (blessed, rejected or failed) in experiment kfkit-<pipeline>,
        with the pipeline's own start and end times (epoch seconds) and FINISHED or FAILED.

        Returns (experiment id, run id). The registered version, if any, is linked as MLflow links a
        version to a run: the register step's run (the version's source run) becomes this run's child.
        """
        import json
        import time

        experiment = self.experiment_id(f"kfkit-{pipeline}")
        start_ms = int((started or time.time()) * 1000)
        run = self.client.create_run(experiment, start_time=start_ms, run_name=run_name)
        run_id = run.info.run_id
        with self.mlflow.start_run(run_id=run_id):
            # MLflow caps a parameter value at 6,000 characters
            self.mlflow.log_params({k: (v if isinstance(v, str) else json.dumps(v))[:6000] for k, v in params.items()})
            self.mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
            self.mlflow.set_tags(tags)
            for path in artifacts:
                if path.is_dir():
                    self.mlflow.log_artifacts(str(path), artifact_path=path.name)
                elif path.exists():
                    self.mlflow.log_artifact(str(path))
        self.client.set_terminated(run_id, status="FAILED" if failed else "FINISHED",
                                   end_time=int((ended or time.time()) * 1000))
        if registered:
            name, version = registered
            source = self.client.get_model_version(name, version).run_id
            if source and source != run_id:
                self.client.set_tag(source, "mlflow.parentRunId", run_id)
            self.client.set_model_version_tag(name, version, "kfkit.pipeline_run", run_id)
            self.client.set_tag(run_id, "kfkit.registered_version", f"models:/{name}/{version}")
        return experiment, run_id

    def set_alias(self, name: str, version: str, alias: str) -> None:
        """Point `alias` (e.g. champion) at a version; MLflow moves it from wherever it was."""
        self.client.set_registered_model_alias(name, alias, str(version))

    def tag_version(self, name: str, version: str, key: str, value: str) -> None:
        self.client.set_model_version_tag(name, str(version), key, value)

    def attach_explanation(self, name: str, version: str, importance: dict[str, float], attributions: Path) -> None:
        """A version's feature importance as its tag (kfkit.feature_importance, JSON, largest first) and
        the whole attributions file in its source run (explanation/), where MLflow shows a version's
        files. A tag value holds at most 5,000 characters: the largest features that fit, then
        `"...": <features left out>`."""
        import json

        items, kept = sorted(importance.items(), key=lambda kv: -kv[1]), {}
        for count, (feature, value) in enumerate(items):
            candidate = {**kept, feature: round(value, 6)}
            rest = {"...": len(items) - count - 1} if count + 1 < len(items) else {}
            if len(json.dumps({**candidate, **rest})) > 5000 - 20:
                kept["..."] = len(items) - count
                break
            kept = candidate
        found = self.client.get_model_version(name, str(version))
        self.client.set_model_version_tag(name, str(version), "kfkit.feature_importance", json.dumps(kept))
        if found.run_id:
            self.client.log_artifact(found.run_id, str(attributions), artifact_path="explanation")

    def _set_aliases(self, name: str, version: str, aliases: list[str]) -> None:
        for alias in aliases:
            self.client.set_registered_model_alias(name, alias, version)

    def model_dir_of(self, name: str, version: str) -> str:
        """A registered version's SavedModel as a directory on this machine (downloaded once from a server)."""
        return self._model_dir(self.client.get_model_version(name, str(version)))

    def version_by_alias(self, name: str, alias: str) -> RegisteredVersion | None:
        try:
            version = self.client.get_model_version_by_alias(name, alias)
        except Exception:  # noqa: BLE001 - no such model or alias
            return None
        return RegisteredVersion(name, str(version.version), self._model_dir(version), version.run_id,
                                 list(version.aliases), created=False)
