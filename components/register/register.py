"""Registration logic for both backends; returns the metadata of a google.VertexModel artifact."""

from __future__ import annotations

from typing import Any

from kfkit.errors import ConfigError


def aliases_for(blessed: bool, traffic_percent: int = 100) -> list[str]:
    """A blessed model deployed with all the traffic is the champion at once; a canary (under 100%)
    only when its analysis promotes it (components/canary), so nothing scores with it before then."""
    return ["challenger", "champion"] if blessed and traffic_percent >= 100 else ["challenger"]


def register_model(model_dir: str, *, model_name: str, backend: str = "local", blessed: bool = True,
                   metrics: dict[str, float] | None = None, params: dict[str, Any] | None = None,
                   labels: dict[str, str] | None = None, task_id: str = "", local_root: str | None = None,
                   project: str = "", location: str = "", serving_image: str = "",
                   gcp_resources: str | None = None, registry=None, vertex=None,
                   traffic_percent: int = 100) -> dict[str, Any]:
    """Register model_dir as a new version of model_name; gcp_resources: where the upload operation is recorded."""
    from kfkit.cloud_jobs import CloudJobs

    if backend not in ("local", "vertex"):
        raise ConfigError(f"backend must be local or vertex, got {backend!r}")
    if not model_name:
        raise ConfigError("model_name is empty: name the registered model, e.g. 'penguins'")
    aliases = aliases_for(blessed, traffic_percent)
    if backend == "local":
        from kfkit.adapters.mlflow_registry import MlflowRegistry

        CloudJobs(gcp_resources)  # no Google Cloud operation: an empty gcp_resources
        registry = registry or MlflowRegistry(local_root)
        version = registry.register(model_name, model_dir, aliases=aliases, params=params, metrics=metrics,
                                    tags=labels, task_id=task_id)
        return {"backend": "local", "resourceName": version.uri, "model_name": model_name,
                "version": version.version, "model_dir": version.model_dir, "aliases": aliases,
                "created": version.created, "tracking_uri": registry.uri}
    from kfkit.adapters.vertex import DEFAULT_SERVING_IMAGE, VertexAdapter

    vertex = vertex or VertexAdapter(project, location, jobs=CloudJobs(gcp_resources))
    with vertex.jobs:
        model, created = vertex.upload_version(display_name=model_name, artifact_uri=model_dir,
                                               serving_image=serving_image or DEFAULT_SERVING_IMAGE, aliases=aliases,
                                               labels=labels or {}, metrics=metrics or {}, task_id=task_id,
                                               make_default="champion" in aliases,
                                               hyperparameters={k[3:]: v for k, v in (params or {}).items()
                                                                if k.startswith("hp_")})
    return {"backend": "vertex", "resourceName": model.versioned_resource_name, "model_name": model_name,
            "version": str(model.version_id), "aliases": aliases, "created": created,
            "uri": f"https://{location}-aiplatform.googleapis.com/v1/{model.versioned_resource_name}"}


def attach_explanation(registered: dict[str, Any], attributions_path: str, *, task: str = "",
                       metrics: dict[str, float] | None = None, local_root: str | None = None, project: str = "",
                       location: str = "", registry=None, vertex=None) -> str:
    """Store the explain step's global importance with the version register made (`registered`: its
    VertexModel metadata): on MLflow as the version's tag and files, on Vertex AI as a ModelEvaluation
    of the version whose model_explanation holds the mean attributions (with the evaluation's
    metrics), where the Model Registry shows a version's evaluations. Where it went, in words."""
    import json
    from pathlib import Path

    explanation = json.loads(Path(attributions_path).read_text())
    importance = {k: float(v) for k, v in explanation["feature_importance"].items()}
    if registered.get("backend") == "vertex":
        from kfkit.adapters.vertex import VertexAdapter

        vertex = vertex or VertexAdapter(project, location)
        name = vertex.import_explanation(registered["resourceName"], importance, explanation["method"],
                                         metrics or {}, task)
        return f"the evaluation {name}"
    from kfkit.adapters.mlflow_registry import MlflowRegistry

    registry = registry or MlflowRegistry(local_root, uri=registered.get("tracking_uri") or None)
    registry.attach_explanation(registered["model_name"], registered["version"], importance, Path(attributions_path))
    return f"models:/{registered['model_name']}/{registered['version']} (tag kfkit.feature_importance)"


def champion_model_dir(model_name: str, backend: str = "local", local_root: str | None = None,
                       project: str = "", location: str = "", registry=None, vertex=None) -> str | None:
    """Where the model holding the `champion` alias lives, or None when there is none yet."""
    if backend == "local":
        from kfkit.adapters.mlflow_registry import MlflowRegistry

        version = (registry or MlflowRegistry(local_root)).version_by_alias(model_name, "champion")
        return version.model_dir if version else None
    from kfkit.adapters.gcs import readable_dir
    from kfkit.adapters.vertex import VertexAdapter
    from kfkit.config import local_root as resolve_root

    model = (vertex or VertexAdapter(project, location)).model_by_alias(model_name, "champion")
    if model is None:
        return None
    # the /gcs/ mount on Vertex AI; a copy under the local root in hybrid mode
    return str(readable_dir(model.uri, resolve_root(local_root) / "cache"))
