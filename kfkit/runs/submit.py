"""`kfkit submit` and `kfkit schedule`: compile (or fetch) a template, check the parameters, send it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from kfkit import params as params_mod
from kfkit.errors import ConfigError


def template_for(pipeline_name: str, template: str | None, directory: Path,
                 step_env: dict[str, str] | None = None) -> Path:
    """A compiled template: the given file, one from Artifact Registry, or compiled now; with
    step_env, a copy with those variables in every step (kfkit.runs.compile.with_step_env)."""
    from kfkit.runs.compile import compile_pipeline, with_step_env

    from kfkit.pipelines import display_name

    if not template:
        return compile_pipeline(pipeline_name, directory / f"{display_name(pipeline_name)}.yaml", step_env)
    if template.startswith("https://"):
        from kfkit.adapters.kfp_backend import download_template
        path = download_template(template, directory)
    else:
        path = Path(template)
        if not path.exists():
            raise ConfigError(f"template {template!r} does not exist")
    return with_step_env(path, directory / f"{display_name(pipeline_name)}-with-env.yaml", step_env) if step_env else path


def checked_values(pipeline_name: str, values: dict[str, Any]) -> dict[str, Any]:
    from kfkit import pipelines
    return params_mod.check(pipelines.load(pipeline_name), dict(values), pipeline_name)


def parse_labels(items: list[str]) -> dict[str, str]:
    """--labels key=value pairs; values stay strings (label values are never numbers or lists)."""
    return {key: value for key, value in (params_mod.split_assignment(item, "--labels") for item in items or [])}


def submit_vertex(pipeline_name: str, values: dict[str, Any], sub, *, template: str | None = None,
                  wait: bool = False, aiplatform=None, echo=print, sleep=None, step_env: dict[str, str] | None = None):
    from kfkit.adapters import vertex_pipelines as vp

    values = checked_values(pipeline_name, values)
    if aiplatform is None:
        from google.cloud import aiplatform
    with tempfile.TemporaryDirectory() as tmp:
        path = template_for(pipeline_name, template, Path(tmp), step_env)
        job = vp.build_job(aiplatform, str(path), f"kfkit-{pipeline_name}", values, sub)
        vp.submit(job, sub)
    echo(f"submitted {job.resource_name}")
    if wait:
        vp.wait(job, echo=echo, **({"sleep": sleep} if sleep else {}))
    return job


def schedule_vertex(pipeline_name: str, values: dict[str, Any], sub, cron: str, *, template: str | None = None,
                    aiplatform=None, echo=print, step_env: dict[str, str] | None = None):
    from kfkit.adapters import vertex_pipelines as vp

    values = checked_values(pipeline_name, values)
    if aiplatform is None:
        from google.cloud import aiplatform
    with tempfile.TemporaryDirectory() as tmp:
        path = template_for(pipeline_name, template, Path(tmp), step_env)
        job = vp.build_job(aiplatform, str(path), f"kfkit-{pipeline_name}", values, sub)
        created = vp.schedule(job, cron, f"kfkit-{pipeline_name}-schedule", sub)
    echo(f"scheduled {pipeline_name} with cron {cron!r}: {getattr(created, 'resource_name', created)}")
    return created


def submit_kfp(pipeline_name: str, values: dict[str, Any], target, *, experiment: str = "",
               template: str | None = None, enable_caching: bool | None = None, pipeline_root: str = "",
               service_account: str = "", wait: bool = False, client=None, echo=print, sleep=None, ask=None,
               step_env: dict[str, str] | None = None) -> str:
    """Submit to Kubeflow Pipelines (target: kfp_backend.KfpTarget); with wait, follow the run to its
    end. The run's id."""
    from kfkit.adapters import kfp_backend
    from kfkit.runs.compile import with_shared_volume, without_caching

    values = checked_values(pipeline_name, values)
    env = step_env or {}
    with tempfile.TemporaryDirectory() as tmp:
        path = template_for(pipeline_name, template, Path(tmp), step_env)
        if env.get("KFKIT_TRAIN_BACKEND") == "tfjob" and env.get("KFKIT_SHARED_VOLUME_CLAIM"):
            # the train step stages its inputs on the claim its TFJob's replicas mount: its own pod
            # mounts it too, at the same path
            path = with_shared_volume(path, Path(tmp) / f"{pipeline_name}-shared.yaml",
                                      env["KFKIT_SHARED_VOLUME_CLAIM"], env.get("KFKIT_SHARED_DIR", ""))
        if enable_caching is False:
            path = without_caching(path, Path(tmp) / f"{pipeline_name}-no-cache.yaml")
        if client is None:
            kfp_backend.check_reachable(target)
            client = kfp_backend.client_for(target)
        run_id = kfp_backend.submit_to_kfp(str(path), values, target, experiment, f"kfkit-{pipeline_name}",
                                           enable_caching, pipeline_root, service_account, client=client)
    echo(f"submitted to {target.host}" + (f" (namespace {target.namespace})" if target.namespace else "")
         + f": run {run_id}")
    if wait:
        kfp_backend.wait_for_run(client, run_id, target.host, echo=echo, ask=ask, **({"sleep": sleep} if sleep else {}))
    return run_id
