"""Run a kfkit pipeline on this machine with kfp.local, and say what the run decided.

Quiet by default: kfp.local's output goes to <run dir>/logs/ (run.log and one file per step), the
terminal gets a line per step and the outcome (kfkit.runs.outcome). `verbose=True` lets kfp.local
print everything as it comes.
"""

from __future__ import annotations

import contextlib
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
    outcome: dict[str, Any] = field(default_factory=dict)

    def render(self, steps: bool = False) -> str:
        """The outcome; with steps, each step's time and its artifacts that are files."""
        from kfkit.runs.outcome import render

        lines = []
        if steps:
            for task in self.tasks:
                lines.append(f"  {task.name:<32} {task.seconds:7.2f}s")
                for name, path in task.artifacts.items():
                    if Path(path).exists():
                        lines.append(f"      {name:<22} {path}")
        lines.append(render(self.outcome) if self.outcome else
                     f"Pipeline {self.pipeline!r} succeeded in {self.seconds:.1f}s; run directory: {self.run_dir}")
        return "\n".join(lines)


def summarize(pipeline: str, run_dir: Path, started: float) -> RunSummary:
    """kfp.local runs tasks one after another, so each task ran from the previous end to its own."""
    finished = []
    for task_dir in run_dir.iterdir():
        output = task_dir / "executor_output.json"
        if task_dir.is_dir() and output.exists() and task_dir.name not in ("logs", "reports"):
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


RUNNERS = ("subprocess", "docker")


def run_local(pipeline_name: str, values: dict[str, Any], local_root: str | None = None, *, verbose: bool = False,
              progress_stream=None, runner: str = "subprocess") -> RunSummary:
    """Run a registered pipeline with kfp.local: every step a subprocess in this Python environment
    (runner="subprocess"), or each in its own kfkit image on a local Docker engine (runner="docker",
    kfkit.runs.docker_runner)."""
    import sys

    from kfp import local

    from kfkit import pipelines
    from kfkit.runs import outcome as outcome_mod
    from kfkit import params as params_mod
    from kfkit.runs import output as run_output

    if pipeline_name in pipelines.VERTEX_ONLY:
        raise KfkitError(f"pipeline {pipeline_name!r} cannot run locally: {pipelines.VERTEX_ONLY[pipeline_name]}")
    if runner not in RUNNERS:
        raise KfkitError(f"runner must be one of {', '.join(RUNNERS)}, got {runner!r}")
    pipeline = pipelines.load(pipeline_name)  # kfkit's, or path/to/file.py:function, or a compiled .yaml
    if pipeline_name not in pipelines.PIPELINES:
        pipeline_name = pipeline.name  # the name its run directories carry (@dsl.pipeline(name=...))
    root = resolve_root(local_root)
    values = dict(values)
    if "local_root" in params_mod.pipeline_inputs(pipeline):
        values.setdefault("local_root", str(root))
    params_mod.check(pipeline, values, pipeline_name)
    every = _defaults(pipeline) | values  # what the run used, for its record
    runs = root / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    # kfkit components run in this environment on purpose (it has kfkit installed), and
    # display names matter only on Vertex: neither warning helps a local user
    warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
    warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
    if runner == "docker":
        from kfkit.runs import docker_runner

        chosen = docker_runner.runner(pipeline, root)
    else:
        chosen = local.SubprocessRunner(use_venv=False)
    local.init(runner=chosen, pipeline_root=str(runs), raise_on_error=True)
    before = {p.name for p in runs.iterdir()}
    started = time.time()
    run_log = runs / f".run-{pipeline_name}-{started:.0f}.log"
    progress = run_output.Progress(progress_stream or sys.stdout)
    error: Exception | None = None
    try:
        with without_retries(pipeline), warm_steps(pipeline, runner):
            if verbose:
                pipeline(**values)
            else:
                where = "local" if runner == "subprocess" else "local, each step in its image"
                progress.line(f"kfkit run {pipeline_name} ({where}, {root}); steps:")
                with run_output.quiet_output(run_log, progress):
                    pipeline(**values)
    except RuntimeError as exc:
        error = exc
    new = sorted((p for p in runs.iterdir() if p.name not in before and p.is_dir()),
                 key=lambda p: p.stat().st_mtime)
    if not new and error is None:
        raise KfkitError(f"pipeline {pipeline_name!r} ran but wrote no run directory under {runs}")
    if not new:
        # kfp.local writes a run's directory with its first finished step: a run whose first step failed
        # gets one here, so its failure, logs and `kfkit runs` entry exist like any other run's
        new = [runs / f"{pipeline.name}-{time.strftime('%Y-%m-%d-%H-%M-%S', time.localtime(started))}-failed"]
        new[-1].mkdir()
    run_dir = new[-1]
    step_logs = {}
    if run_log.exists():
        logs = run_dir / "logs"
        logs.mkdir(exist_ok=True)
        run_log = run_log.rename(logs / "run.log")
        step_logs = run_output.split_logs(run_log, logs)
    summary = summarize(pipeline_name, run_dir, started)
    steps = [{"name": t.name, "seconds": round(t.seconds, 2),
              "log": str(step_logs[t.name]) if t.name in step_logs else None} for t in summary.tasks]
    if error is None:
        summary.outcome = outcome_mod.outcome(pipeline_name, run_dir, "succeeded", summary.seconds, steps)
        _track(summary.outcome, every, root)
        return summary
    failure = run_output.find_failure(step_logs, progress) if step_logs else None
    if failure is None:
        lines = [f"{error}", "Run again with --verbose to see every step's output."]
        failed = {"step": None, "message": str(error), "log": None, "lines": lines}
    else:
        failed = {"step": failure.step, "kind": failure.kind, "message": failure.message,
                  "log": str(failure.log) if failure.log else None, "lines": failure.render()}
    summary.outcome = outcome_mod.outcome(pipeline_name, run_dir, "failed", summary.seconds, steps, failed)
    _track(summary.outcome, every, root)
    raise PipelineFailed(summary, "\n".join(failed["lines"]))


@contextlib.contextmanager
def without_retries(pipeline):
    """Run `pipeline` here with no retry policy: the cloud steps' retries (pipelines/retries.py) are
    for transient Google Cloud errors, and a local step that failed would only fail again, later."""
    spec = pipeline.pipeline_spec
    dags = [spec.root.dag] + [c.dag for c in spec.components.values() if c.HasField("dag")]
    saved = []
    for dag in dags:
        for task in dag.tasks.values():
            if task.HasField("retry_policy"):
                policy = type(task.retry_policy)()
                policy.CopyFrom(task.retry_policy)
                saved.append((task, policy))
                task.ClearField("retry_policy")
    try:
        yield
    finally:
        for task, policy in saved:
            task.retry_policy.CopyFrom(policy)


def warm_steps(pipeline, runner: str):
    """Each step's interpreter started, with its imports, while the steps before it run
    (kfkit.runs.warm; the subprocess runner only); MLflow's import for recording the run starts
    once those imports are under way (at once without them)."""
    if runner != "subprocess":
        _preload_tracking()
        return contextlib.nullcontext()
    from kfkit.runs import warm

    return warm.warm_steps(pipeline, settled=_preload_tracking)


def _preload_tracking() -> None:
    """Import MLflow while the steps run: this process only waits on them, and recording the run
    at the end would otherwise start with MLflow's imports (about two seconds, benchmarks/pipeline.py)."""
    import threading

    def load():
        try:
            # MLflow imports its SQL stores only when a client first opens the database
            import mlflow.store.model_registry.sqlalchemy_store  # noqa: F401
            import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
        except Exception:  # noqa: BLE001 - _track reports a broken MLflow when it needs it
            pass

    threading.Thread(target=load, daemon=True, name="kfkit-preload-mlflow").start()


def _defaults(pipeline) -> dict[str, Any]:
    """Each parameter's default, from the pipeline's interface (a function's or a compiled spec's)."""
    inputs = getattr(pipeline.component_spec, "inputs", None) or {}
    return {name: spec.default for name, spec in inputs.items() if spec.default is not None}


def _track(result: dict[str, Any], values: dict[str, Any], root: Path) -> None:
    """Every run (blessed, rejected or failed) becomes an MLflow run; tracking never fails the run."""
    import logging

    from kfkit.runs import outcome as outcome_mod

    # a first run that never registered locally creates MLflow's database here: its INFO lines
    # (and alembic's) would land between the steps and the outcome
    for name in ("mlflow", "mlflow.store.db.utils", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        outcome_mod.track(result, values, root)
    except Exception as exc:  # noqa: BLE001 - the run's outcome stands without its MLflow record
        logging.getLogger("kfkit.run").warning("could not record the run in MLflow: %s", exc)


class PipelineFailed(KfkitError):
    """A local run failed; `summary` holds what ran, the failing step and its log."""

    def __init__(self, summary: RunSummary, message: str):
        super().__init__(f"pipeline {summary.pipeline!r} failed.\n{message}")
        self.summary = summary
