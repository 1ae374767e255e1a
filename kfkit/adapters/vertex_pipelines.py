"""Vertex AI Pipelines adapter: submit, watch and schedule pipeline jobs (the only module that
builds aiplatform.PipelineJob). Tests pass a fake `aiplatform` module and check every argument."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from kfkit.errors import KfkitError

log = logging.getLogger("kfkit.submit")
FAILED_STATES = {"PIPELINE_STATE_FAILED", "PIPELINE_STATE_CANCELLED"}
DONE_STATES = FAILED_STATES | {"PIPELINE_STATE_SUCCEEDED"}


@dataclass
class VertexSubmission:
    project: str
    region: str
    pipeline_root: str
    service_account: str = ""
    network: str = ""
    encryption_key: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    enable_caching: bool | None = None


def build_job(aiplatform, template_path: str, display_name: str, values: dict[str, Any], sub: VertexSubmission,
              credentials=None):
    """The PipelineJob, constructed (the SDK validates the template and parameters client-side); its
    labels made to follow Vertex's label rules as every other kfkit resource's."""
    from kfkit.adapters.vertex import use_endpoint_variable, vertex_labels

    use_endpoint_variable(aiplatform, sub.project)
    return aiplatform.PipelineJob(
        display_name=display_name, template_path=template_path, pipeline_root=sub.pipeline_root,
        parameter_values=values, enable_caching=sub.enable_caching, labels=vertex_labels(sub.labels),
        encryption_spec_key_name=sub.encryption_key or None, project=sub.project, location=sub.region,
        credentials=credentials)


def submit(job, sub: VertexSubmission) -> None:
    job.submit(service_account=sub.service_account or None, network=sub.network or None)


def _state(value) -> str:
    return getattr(value, "name", str(value))


def wait(job, poll_seconds: float = 15.0, echo: Callable[[str], None] = print, sleep=time.sleep) -> None:
    """Print each task's state as it changes; raise with the failing task's error when the job fails."""
    seen: dict[str, str] = {}
    while True:
        job._sync_gca_resource() if hasattr(job, "_sync_gca_resource") else None
        for task in getattr(job, "task_details", []) or []:
            state = _state(task.state)
            if seen.get(task.task_name) != state:
                seen[task.task_name] = state
                echo(f"{time.strftime('%H:%M:%S')}  {task.task_name:<32} {state}")
        state = _state(job.state)
        if state in DONE_STATES:
            break
        sleep(poll_seconds)
    if state in FAILED_STATES:
        failed = [t for t in getattr(job, "task_details", []) or [] if _state(t.state) == "FAILED"]
        detail = "; ".join(f"task {t.task_name}: {getattr(t.error, 'message', '') or 'no message'}" for t in failed)
        raise KfkitError(f"pipeline job {job.resource_name} ended {state}" + (f" ({detail})" if detail else ""))
    echo(f"pipeline job {job.resource_name} succeeded")
    for line in outcome_lines(job):
        echo(line)


def outcome_lines(job) -> list[str]:
    """What a finished job decided, from its tasks' states (the gated steps ran or were skipped)."""
    return task_outcome_lines({t.task_name: _state(t.state) for t in getattr(job, "task_details", []) or []})


def task_outcome_lines(states: dict[str, str]) -> list[str]:
    """What a finished run decided, from {task name: state} (Vertex AI's and Kubeflow Pipelines' alike)."""
    ran = {name for name, state in states.items() if state == "SUCCEEDED"}
    lines = [f"Tasks: {len(ran)} succeeded, {sum(1 for s in states.values() if s == 'SKIPPED')} skipped"]
    if "evaluate-model" in states:
        if "register-model" in ran:
            lines.append("Outcome: BLESSED: the model was registered" + (" and deployed" if "deploy-model" in ran else ""))
        else:
            lines.append("Outcome: NOT BLESSED: register and deploy did not run; the evaluate step's `reason` "
                         "artifact says why")
    if "monitor-endpoint" in states:
        lines.append("Outcome: " + ("DRIFT: the retrain ran" if {"train-tensorflow-model", "train-tensorflow-model-2"} & ran
                                    else "no retrain (no drift, insufficient data, or retrain=false); see the "
                                         "monitor step's `anomalies` artifact"))
    if "batch-predict" in ran:
        lines.append("Outcome: SCORED: see the batch-predict step's `predictions` table")
    return lines


def schedule(job, cron: str, display_name: str, sub: VertexSubmission, max_concurrent_runs: int = 1):
    return job.create_schedule(display_name=display_name, cron=cron, max_concurrent_run_count=max_concurrent_runs,
                               service_account=sub.service_account or None, network=sub.network or None)
