"""The local loop: how long `kfkit run training --local` takes, and how much of it is start-up.

    python benchmarks/pipeline.py

Runs the demo training pipeline on a scratch root: once cold (no champion), then warm (a champion
exists, as in a developer's second run) in interleaved rounds of four kinds: each step started
the ordinary way (KFKIT_LOCAL_WARM=0: a fresh interpreter when kfp.local reaches the step), warm
(KFKIT_LOCAL_FORK=0: each step's interpreter started, with its imports, while the steps before it
run), forked (KFKIT_LOCAL_KEEP=0: each step forked from the run's own zygote, which imported every
step's modules once) and kept, as `kfkit run` runs it (the zygote kept from the run before, its
imports done, forks the steps); the best of each kind is reported, all from the same session on the
same machine. Each step's time is read from the run's summary.json. A step's start-up is measured
apart: a process that imports what the step imports and does nothing else. A step's work is its
ordinary time minus that start-up; the sum of the work (each step's best over the ordinary runs)
is the floor a faster runner could reach, and each warm run's end-to-end time is printed against
it (goal: within 1.5x, issue 36; target: under 20 s).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# what each step's process imports before it does any work
IMPORTS = {
    "bigquery-query-to-dataset": ("import kfp.dsl.executor_main, duckdb, pyarrow, kfkit.components.ingest.ingest, "
                                  "kfkit.warehouse.local"),
    "validate-data": "import kfp.dsl.executor_main, duckdb, kfkit.components.validate.validate",
    "train-tensorflow-model": "import kfp.dsl.executor_main, tensorflow, kfkit.components.train.train",
    "evaluate-model": ("import kfp.dsl.executor_main, sklearn.metrics, mlflow.store.model_registry.sqlalchemy_store, "
                       "kfkit.components.evaluate.evaluate, pyarrow.dataset; "
                       "from kfkit.serving.model_io import tensorflow_runtime; tensorflow_runtime()"),
    "record-recipe": "import kfp.dsl.executor_main, kfkit.components.recipe.recipe",
    "register-model": ("import kfp.dsl.executor_main, mlflow.store.model_registry.sqlalchemy_store, "
                       "mlflow.store.tracking.sqlalchemy_store, kfkit.components.register.register"),
    "write-model-card": "import kfp.dsl.executor_main, kfkit.components.model_card.model_card",
    "deploy-model": "import kfp.dsl.executor_main, kfkit.components.deploy.deploy",
}


def startup(imports: str, repeat: int = 2) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        # as kfp.local starts a step: _KFP_RUNTIME spares the executor kfp's client imports
        # and the step ends without the interpreter's teardown (kfkit.quick_exit)
        subprocess.run([sys.executable, "-c", imports + "; import os; os._exit(0)"], cwd=REPO, check=True, capture_output=True,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", _KFP_RUNTIME="true"))
        best = min(best, time.perf_counter() - started)
    return best


def run(root: Path, **env: str) -> tuple[float, dict]:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "kfkit.cli", "run", "training", "--local", "--local-root", str(root)],
                   cwd=REPO, check=True, capture_output=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **env))
    seconds = time.perf_counter() - started
    latest = max((root / "runs").glob("*/summary.json"), key=lambda p: p.stat().st_mtime)
    return seconds, json.loads(latest.read_text())


def best(runs: list[tuple[float, dict]]) -> tuple[float, dict]:
    return min(runs, key=lambda r: r[0])


# how kfkit.runs.warm starts the steps: the ordinary way (a fresh interpreter when kfp.local
# reaches the step), warm (each step's own interpreter started ahead with its imports), forked (each
# step forked from the run's zygote, which imported every step's modules once, and ends with the
# run), kept (the default: the zygote kept from the previous run, its imports done, forks the steps)
KINDS = {"ordinary": {"KFKIT_LOCAL_WARM": "0"}, "warm": {"KFKIT_LOCAL_FORK": "0"},
         "forked": {"KFKIT_LOCAL_KEEP": "0"}, "kept": {}}


def main(rounds: int = 2) -> None:
    from kfkit.runs import warm

    root = Path(tempfile.mkdtemp(prefix="kfkit-bench-pipeline-"))
    before = set(warm.kept_places())
    cold_s, cold = run(root)
    runs: dict[str, list] = {kind: [] for kind in KINDS}
    logs: dict[str, list[str]] = {kind: [] for kind in KINDS}
    for index in range(rounds):  # interleaved, so the machine's noise falls on every kind alike
        for kind, env in KINDS.items():
            log = root / f"{kind}-{index}.log"
            runs[kind].append(run(root, KFKIT_LOCAL_WARM_LOG=str(log), **env))
            logs[kind].append(log.read_text() if log.exists() else "")
    for place in set(warm.kept_places()) - before:
        warm.end_kept(place)
    bests = {kind: best(found) for kind, found in runs.items()}
    # each step's best ordinary time over the runs: the machine is shared, its noise only ever adds
    fastest = {}
    for _, summary in runs["ordinary"]:
        for step in summary["steps"]:
            fastest[step["name"]] = min(fastest.get(step["name"], float("inf")), step["seconds"])
    starts = {name: startup(imports) for name, imports in IMPORTS.items()}
    print(f"{'step':<28}{'cold s':>8}{'ordinary s':>12}{'start-up s':>12}{'work s':>8}{'warm s':>8}{'forked s':>10}"
          f"{'kept s':>8}")
    floor = 0.0
    cold_steps = {s["name"]: s["seconds"] for s in cold["steps"]}
    steps = {kind: {s["name"]: s["seconds"] for s in bests[kind][1]["steps"]} for kind in KINDS}
    for step in bests["ordinary"][1]["steps"]:
        name = step["name"]
        start = starts.get(name, 0.0)
        work = max(fastest[name] - start, 0.0)
        floor += work
        print(f"{name:<28}{cold_steps.get(name, 0.0):>8.1f}{fastest[name]:>12.1f}{start:>12.1f}{work:>8.1f}"
              f"{steps['warm'].get(name, 0.0):>8.1f}{steps['forked'].get(name, 0.0):>10.1f}"
              f"{steps['kept'].get(name, 0.0):>8.1f}")
    ordinary_s, ordinary = bests["ordinary"]
    ordinary_steps = sum(fastest.values())
    print(f"\ncold run end to end: {cold_s:.1f}s ({cold['decision']}); warm run (a kept zygote, the default): "
          f"{bests['kept'][0]:.1f}s ({bests['kept'][1]['decision']}); target < 20 s")
    print(f"the floor (sum of the steps' work): {floor:.1f}s; best of {rounds} interleaved runs each, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
    print(f"  steps started the ordinary way: {ordinary_s:.1f}s ({ordinary_s / floor:.1f}x the floor): steps (each "
          f"its best) {ordinary_steps:.1f}s, of which start-up {ordinary_steps - floor:.1f}s; the rest "
          f"({ordinary_s - ordinary_steps:.1f}s) is the CLI itself, kfp.local between steps and recording the run")
    for kind, what in (("warm", "each step's own interpreter started ahead"),
                       ("forked", "each step forked from the run's own zygote"),
                       ("kept", "each step forked from the zygote kept from the run before (default)")):
        seconds, _ = bests[kind]
        how = logs[kind][runs[kind].index(bests[kind])]
        waited = re.findall(r"^(\w+): (?:warm|forked) \(waited ([0-9.]+)s", how, re.M)
        others = [line for line in how.splitlines() if not re.search(r": (warm|forked) \(", line)]
        print(f"  {what}: {seconds:.1f}s ({seconds / floor:.1f}x the floor; goal <= 1.5x), steps "
              f"{sum(steps[kind].values()):.1f}s; their turns waited {sum(float(s) for _, s in waited):.1f}s for "
              "imports (" + ", ".join(f"{name} {float(s):.1f}s" for name, s in waited if float(s) >= 0.05)
              + (f"); not warm: {'; '.join(others)}" if others else ")"))


if __name__ == "__main__":
    main()
