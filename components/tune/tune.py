"""Hyperparameter tuning on this machine with Optuna: trials of train, pruned early, in parallel processes.

Why Optuna (benchmarks/tune.py --libraries, docs/tuning.md): on the taxi sample it reached the same
or a better eval loss than Keras Tuner's Bayesian search within the same trial budget, with less
time outside training, and its journal storage gives resumable, multi-process studies without a
server.

- Each trial trains with train's own code (components/train/train.py), nothing exported, and
  reports the objective's eval metric after every epoch; Optuna's median pruner stops a trial whose
  curve is below the median of earlier trials at the same epoch.
- `parallelism` processes (at most the cores) share one study through a journal file under
  <local_root>/tuning/<study>.journal; each takes its share of the remaining budget, so the budget is
  exact. A study interrupted (a killed step) is resumed by the next run with the same study name:
  its finished trials count, its unfinished ones are marked failed.
- The study name defaults to a digest of the search space, objective, base hyperparameters and the
  training data's statistics: the same tuning on the same data resumes; other data starts afresh.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kfkit.components.tune.space import Dimension, decode, parse_space
from kfkit.errors import ConfigError

log = logging.getLogger("kfkit.tune")
METRICS = ("eval_loss", "eval_accuracy", "eval_mae")
GOALS = ("minimize", "maximize")
SAMPLERS = ("tpe", "random")


@dataclass
class TrainingInputs:
    """What every trial trains on: train's own inputs, less the hyperparameters."""
    train_data: str
    eval_data: str
    statistics: dict[str, Any]
    schema: dict[str, Any]
    label: str
    task: str = "auto"
    exclude_columns: list[str] = field(default_factory=list)
    categorical_columns: list[str] = field(default_factory=list)


@dataclass
class Trial:
    number: int
    state: str  # COMPLETE, PRUNED or FAIL
    params: dict[str, Any]
    value: float | None
    seconds: float | None
    epochs: int | None


@dataclass
class TuneResult:
    best: dict[str, Any]  # every hyperparameter train takes: the best trial's, the base's for the rest
    best_value: float
    best_trial: int
    metric: str
    goal: str
    trials: list[Trial]
    study_name: str
    storage: str
    seconds: float
    library: str = "optuna"

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "trials": [dataclasses.asdict(t) for t in self.trials]}


def check_objective(metric: str, goal: str) -> None:
    if metric not in METRICS:
        raise ConfigError(f"metric must be one of {', '.join(METRICS)} (train's metrics on the eval split), "
                          f"got {metric!r}")
    if goal not in GOALS:
        raise ConfigError(f"goal must be minimize or maximize, got {goal!r}")


def check_metric_for_task(metric: str, inputs: TrainingInputs) -> None:
    """The objective must be one of the eval metrics train will report for this label's task."""
    from kfkit.tabular import build_spec

    spec = build_spec(inputs.statistics, inputs.schema, inputs.label, inputs.task, inputs.exclude_columns,
                      inputs.categorical_columns)
    available = ["eval_loss", "eval_mae" if spec.task == "regression" else "eval_accuracy"]
    if metric not in available:
        raise ConfigError(f"metric {metric!r} is not one of this {spec.task} model's eval metrics: "
                          f"{', '.join(sorted(available))}")


def default_study_name(space: list[Dimension], metric: str, goal: str, base: dict[str, Any],
                       inputs: TrainingInputs) -> str:
    digest = hashlib.sha256(json.dumps(
        [[dataclasses.asdict(d) for d in space], metric, goal, base, inputs.statistics, inputs.label, inputs.task,
         sorted(inputs.exclude_columns), sorted(inputs.categorical_columns)], sort_keys=True, default=str).encode())
    return f"kfkit-tune-{digest.hexdigest()[:12]}"


def _storage(path: Path):
    import optuna
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def _sampler(kind: str, seed: int | None, max_trials: int):
    import optuna

    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # a third of a small budget explores at random before TPE models it (Optuna's default is 10)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(3, min(10, max_trials // 3)),
                                      constant_liar=True)


def _pruner(enabled: bool):
    import optuna

    if not enabled:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)


def suggest(trial, dim: Dimension) -> Any:
    if dim.kind == "float":
        return trial.suggest_float(dim.name, dim.low, dim.high, log=dim.log)
    if dim.kind == "int":
        return trial.suggest_int(dim.name, int(dim.low), int(dim.high), log=dim.log)
    return trial.suggest_categorical(dim.name, dim.encoded_choices())


def pruning_callback(trial, metric: str):
    """A Keras callback reporting the objective's eval metric after each epoch, stopping the trial when
    Optuna's pruner says its curve is hopeless."""
    import keras
    import optuna

    class PruneOnEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get("val_" + metric.removeprefix("eval_"))
            trial.set_user_attr("epochs", epoch + 1)  # a pruned trial never returns its count
            if value is None:
                return
            trial.report(float(value), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {epoch + 1}: {metric} {float(value):.4g}")

    return PruneOnEpoch()


def _objective(config: dict[str, Any]):
    from kfkit.components.train.train import Hyperparameters, train

    inputs = TrainingInputs(**config["inputs"])
    space = [Dimension(**d) for d in config["space"]]

    def objective(trial) -> float:
        params = {d.name: decode(d.name, suggest(trial, d)) for d in space}
        hp = Hyperparameters(**{**config["base"], **params}).check()
        started = time.perf_counter()
        callbacks = [pruning_callback(trial, config["metric"])] if config["pruning"] else []
        try:
            result = train(inputs.train_data, inputs.eval_data, inputs.statistics, inputs.schema, inputs.label, None,
                           hp, inputs.task, inputs.exclude_columns, categorical_columns=inputs.categorical_columns,
                           callbacks=callbacks, verbose=0)
        finally:
            trial.set_user_attr("seconds", time.perf_counter() - started)
        trial.set_user_attr("epochs", result.epochs_run)
        if config["metric"] not in result.metrics:
            raise ConfigError(f"metric {config['metric']!r} is not one of this {result.spec.task} model's eval "
                              f"metrics: {', '.join(k for k in sorted(result.metrics) if k.startswith('eval_'))}")
        return result.metrics[config["metric"]]
    return objective


def _worker(config: dict[str, Any], index: int, n_trials: int) -> None:
    """One process's share of the trials (a top-level function: spawned processes import it)."""
    import optuna

    threads = config.get("threads")
    if threads:
        os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
        os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # a resumed study's sampler must not replay the first run's draws: the offset is the trials so far
    seed = None if config["seed"] is None else config["seed"] + 1000 * config.get("resumed_after", 0) + index
    study = optuna.load_study(study_name=config["study_name"], storage=_storage(Path(config["storage"])),
                              sampler=_sampler(config["sampler"], seed, config["max_trials"]),
                              pruner=_pruner(config["pruning"]))
    # a failed trial (NaN loss, say) is recorded and the search goes on; an error in kfkit's own
    # code or the data (ConfigError, a missing column) stops it
    study.optimize(_objective(config), n_trials=n_trials, catch=(FloatingPointError, ArithmeticError))


def tune_local(inputs: TrainingInputs, space: str | dict | list[Dimension], *, base: dict[str, Any] | None = None,
               metric: str = "eval_loss", goal: str = "minimize", max_trials: int = 20, parallelism: int = 1,
               study_name: str = "", local_root: str | None = None, seed: int | None = 42, pruning: bool = True,
               sampler: str = "tpe") -> TuneResult:
    """Run (or resume) the study until max_trials trials have finished, and return the best."""
    import optuna

    from kfkit.components.train.train import Hyperparameters
    from kfkit.config import local_root as resolve_root

    dims = space if isinstance(space, list) else parse_space(space)
    check_objective(metric, goal)
    if max_trials < 1:
        raise ConfigError(f"max_trials must be >= 1, got {max_trials}")
    if parallelism < 1:
        raise ConfigError(f"parallelism must be >= 1, got {parallelism}")
    if sampler not in SAMPLERS:
        raise ConfigError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    base = dataclasses.asdict(Hyperparameters(**(base or {})).check())
    check_metric_for_task(metric, inputs)
    cores = os.cpu_count() or 1
    if parallelism > cores:
        log.info("parallelism %d is more than the %d cores here: %d processes", parallelism, cores, cores)
        parallelism = cores
    name = study_name or default_study_name(dims, metric, goal, base, inputs)
    directory = resolve_root(local_root) / "tuning"
    directory.mkdir(parents=True, exist_ok=True)
    storage_path = directory / f"{name}.journal"
    storage = _storage(storage_path)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=storage, direction=goal, load_if_exists=True)
    if study.direction.name.lower() != goal:
        raise ConfigError(f"study {name!r} in {storage_path} was created to {study.direction.name.lower()}, "
                          f"not {goal}: name another study_name")
    for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        # left by an interrupted run: it will never report
        study.tell(stale.number, state=optuna.trial.TrialState.FAIL)
        log.info("trial %d of %s was interrupted: marked failed", stale.number, name)
    done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                        optuna.trial.TrialState.PRUNED)))
    remaining = max(max_trials - done, 0)
    config = {"inputs": dataclasses.asdict(inputs), "space": [dataclasses.asdict(d) for d in dims], "base": base,
              "metric": metric, "goal": goal, "max_trials": max_trials, "study_name": name,
              "storage": str(storage_path), "seed": seed, "pruning": pruning, "sampler": sampler,
              "threads": max(1, cores // parallelism) if parallelism > 1 else None,
              "resumed_after": len(study.get_trials(deepcopy=False))}
    started = time.perf_counter()
    if done:
        log.info("study %s: %d of %d trials already finished, %d to run", name, done, max_trials, remaining)
    shares = [remaining // parallelism + (i < remaining % parallelism) for i in range(parallelism)]
    shares = [s for s in shares if s]
    if len(shares) == 1:
        _worker(config, 0, shares[0])
    elif shares:
        _run_processes(config, shares, directory / name)
    return _result(optuna.load_study(study_name=name, storage=storage), dims, base, metric, goal, name,
                   str(storage_path), time.perf_counter() - started)


def _run_processes(config: dict[str, Any], shares: list[int], stem: Path) -> None:
    """Each share in its own Python process (not multiprocessing: a spawned child re-runs the caller's
    main module, and TensorFlow does not survive a fork); a failed worker's log tail is the error."""
    import subprocess
    import sys

    config_path = stem.with_suffix(".config.json")
    config_path.write_text(json.dumps(config))
    workers = []
    for index, n in enumerate(shares):
        log_path = stem.with_suffix(f".worker{index}.log")
        handle = open(log_path, "w")
        workers.append((subprocess.Popen([sys.executable, "-m", "kfkit.components.tune.tune", str(config_path),
                                          str(index), str(n)], stdout=handle, stderr=subprocess.STDOUT),
                        handle, log_path))
    failed = []
    for process, handle, log_path in workers:
        process.wait()
        handle.close()
        if process.returncode != 0:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            failed.append(f"worker {log_path.name} exited {process.returncode}: {tail[0]} (log: {log_path})")
    if failed:
        raise ConfigError("tuning failed: " + "; ".join(failed))


def _result(study, dims: list[Dimension], base: dict[str, Any], metric: str, goal: str, name: str, storage: str,
            seconds: float) -> TuneResult:
    trials = [Trial(t.number, t.state.name, {k: decode(k, v) for k, v in t.params.items()}, t.value,
                    t.user_attrs.get("seconds"), t.user_attrs.get("epochs"))
              for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    complete = [t for t in trials if t.state == "COMPLETE" and t.value is not None]
    if not complete:
        states = ", ".join(f"{t.number}: {t.state}" for t in trials) or "none ran"
        raise ConfigError(f"study {name}: no trial finished with a {metric} ({states})")
    best = (min if goal == "minimize" else max)(complete, key=lambda t: t.value)
    chosen = {**base, **best.params}
    chosen.pop("seed", None)
    log.info("study %s: best %s %.4g (trial %d of %d) with %s", name, metric, best.value, best.number, len(trials),
             {d.name: chosen[d.name] for d in dims})
    return TuneResult(chosen, float(best.value), best.number, metric, goal, trials, name, storage, seconds)


if __name__ == "__main__":
    import sys

    _worker(json.loads(Path(sys.argv[1]).read_text()), int(sys.argv[2]), int(sys.argv[3]))
