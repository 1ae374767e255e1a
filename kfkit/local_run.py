"""Run a kfkit pipeline on this machine with kfp.local, and summarize what each step produced."""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kfkit.config import local_root as resolve_root
from kfkit.errors import KfkitError


@dataclass
class TaskSummary:
    name: str
    seconds: float
    artifacts: dict[str, str] = field(default_factory=dict)


@dataclass
class RunSummary:
    pipeline: str
    run_dir: Path
    seconds: float
    tasks: list[TaskSummary]

    def render(self) -> str:
        lines = [f"Pipeline {self.pipeline!r} succeeded in {self.seconds:.1f}s; run directory: {self.run_dir}"]
        for task in self.tasks:
            lines.append(f"  {task.name:<32} {task.seconds:7.2f}s")
            for name, path in task.artifacts.items():
                lines.append(f"      {name:<22} {path}")
        reports = [p for t in self.tasks for n, p in t.artifacts.items() if n.endswith("report")]
        if reports:
            lines.append("Open the reports in a browser: " + ", ".join(reports))
        return "\n".join(lines)


def summarize(pipeline: str, run_dir: Path, started: float) -> RunSummary:
    """kfp.local runs tasks one after another, so each task ran from the previous end to its own."""
    finished = []
    for task_dir in run_dir.iterdir():
        output = task_dir / "executor_output.json"
        if task_dir.is_dir() and output.exists():
            finished.append((output.stat().st_mtime, task_dir))
    finished.sort()
    tasks, previous = [], started
    for end, task_dir in finished:
        try:
            outputs = json.loads((task_dir / "executor_output.json").read_text()).get("artifacts", {})
        except (OSError, json.JSONDecodeError):
            outputs = {}
        names = sorted(outputs) or sorted(p.name for p in task_dir.iterdir() if p.name != "executor_output.json")
        artifacts = {name: str(task_dir / name) for name in names}
        tasks.append(TaskSummary(task_dir.name, max(end - previous, 0.0), artifacts))
        previous = end
    return RunSummary(pipeline, run_dir, time.time() - started, tasks)


def run_local(pipeline_name: str, values: dict[str, Any], local_root: str | None = None) -> RunSummary:
    """Run a registered pipeline with kfp.local's SubprocessRunner in this Python environment."""
    from kfp import local

    import pipelines
    from kfkit import params as params_mod

    if pipeline_name in pipelines.VERTEX_ONLY:
        raise KfkitError(f"pipeline {pipeline_name!r} cannot run locally: {pipelines.VERTEX_ONLY[pipeline_name]}")
    pipeline = pipelines.load(pipeline_name)
    root = resolve_root(local_root)
    values = dict(values)
    if "local_root" in params_mod.pipeline_inputs(pipeline):
        values.setdefault("local_root", str(root))
    params_mod.check(pipeline, values, pipeline_name)
    runs = root / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    # kfkit components run in this environment on purpose (it has kfkit installed), and
    # display names matter only on Vertex: neither warning helps a local user
    warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
    warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(runs),
               raise_on_error=True)
    before = {p.name for p in runs.iterdir()}
    started = time.time()
    try:
        pipeline(**values)
    except RuntimeError as exc:
        raise KfkitError(f"pipeline {pipeline_name!r} failed: {exc}. The failing step's error is printed above.") from exc
    new = sorted((p for p in runs.iterdir() if p.name not in before and p.is_dir()),
                 key=lambda p: p.stat().st_mtime)
    if not new:
        raise KfkitError(f"pipeline {pipeline_name!r} ran but wrote no run directory under {runs}")
    return summarize(pipeline_name, new[-1], started)
