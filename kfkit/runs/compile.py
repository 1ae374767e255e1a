"""Compile every pipeline and every component to YAML (what `kfp dsl compile` writes)."""

from __future__ import annotations

from pathlib import Path

from kfp import compiler

from kfkit import components
from kfkit.errors import ConfigError
from kfkit import pipelines


def compile_pipeline(name: str, path: Path, step_env: dict[str, str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipelines.load(name), str(path))
    return with_step_env(path, path, step_env) if step_env else path


def with_step_env(template: Path, path: Path, step_env: dict[str, str]) -> Path:
    """The template at `path` with these variables in every step's container (PipelineSpec's
    container env, which Kubeflow Pipelines and Vertex AI both set): how steps in pods find shared
    services, e.g. MLFLOW_TRACKING_URI for the cluster's MLflow server."""
    import yaml

    documents = list(yaml.safe_load_all(Path(template).read_text()))
    executors = documents[0].get("deploymentSpec", {}).get("executors", {})
    for executor in executors.values():
        container = executor.get("container")
        if container is not None:
            kept = [e for e in container.get("env", []) if e.get("name") not in step_env]
            container["env"] = kept + [{"name": k, "value": v} for k, v in step_env.items()]
    Path(path).write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return Path(path)


TRAIN_FUNCTION = "train_tensorflow_model"


def with_shared_volume(template: Path, path: Path, claim: str, mount_path: str) -> Path:
    """The template at `path` with the PersistentVolumeClaim `claim` mounted at mount_path in the train
    step's pod, as kfp-kubernetes' mount_pvc writes it into the Kubernetes platform spec (a second
    YAML document; Kubeflow Pipelines' driver reads both the pvcNameParameter and the older
    `constant`). A train step that runs its replicas as a TFJob stages its inputs there, where the
    replicas mount the same claim."""
    import re

    import yaml

    # a claim is a Kubernetes object name (DNS-1123 subdomain, at most 253 characters)
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", claim) or len(claim) > 253:
        raise ConfigError(f"KFKIT_SHARED_VOLUME_CLAIM {claim!r} is not a Kubernetes object name")
    if not mount_path.startswith("/"):
        raise ConfigError(f"KFKIT_SHARED_DIR {mount_path!r} must be an absolute path (where the claim is mounted)")
    documents = list(yaml.safe_load_all(Path(template).read_text()))
    executors = documents[0].get("deploymentSpec", {}).get("executors", {})
    trains = [name for name, executor in executors.items()
              if TRAIN_FUNCTION in (executor.get("container", {}).get("args") or [])]
    if not trains:
        raise ConfigError(f"the pipeline has no {TRAIN_FUNCTION} step to mount {claim} in")
    if len(documents) == 1:
        documents.append({})
    platform = documents[1].setdefault("platforms", {}).setdefault("kubernetes", {})
    configs = platform.setdefault("deploymentSpec", {}).setdefault("executors", {})
    for name in trains:
        mounts = configs.setdefault(name, {}).setdefault("pvcMount", [])
        mounts[:] = [m for m in mounts if m.get("mountPath") != mount_path]
        mounts.append({"constant": claim, "mountPath": mount_path,
                       "pvcNameParameter": {"runtimeValue": {"constant": claim}}})
    Path(path).write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return Path(path)


def without_caching(template: Path, path: Path) -> Path:
    """The template at `path` with caching off for every task of every DAG: the root's and each
    sub-DAG's (a dsl.If or dsl.ParallelFor body). kfp.Client's enable_caching reaches the root's
    tasks only; the Vertex AI SDK already walks every DAG (PipelineJob's _set_enable_caching_value)."""
    import yaml

    documents = list(yaml.safe_load_all(Path(template).read_text()))
    spec = documents[0]
    for component in [spec.get("root", {}), *spec.get("components", {}).values()]:
        for task in (component.get("dag") or {}).get("tasks", {}).values():
            task["cachingOptions"] = {**task.get("cachingOptions", {}), "enableCache": False}
    Path(path).write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return Path(path)


def compile_all(output: Path, step_env: dict[str, str] | None = None) -> list[Path]:
    written = []
    for name in sorted(pipelines.PIPELINES):
        written.append(compile_pipeline(name, output / "pipelines" / f"{name}.yaml", step_env))
    for name in sorted(components.COMPONENTS):
        path = output / "components" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        compiler.Compiler().compile(components.load(name), str(path))
        written.append(path)
    return written
