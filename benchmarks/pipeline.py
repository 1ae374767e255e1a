"""The local loop: how long `kfkit run training --local` takes, and how much of it is start-up.

    python benchmarks/pipeline.py

Runs the demo training pipeline twice on a scratch root (cold: no champion; warm: a champion
exists, as in a developer's second run) and reads each step's time from the run's summary.json.
Each step runs in a fresh Python process (kfp.local's SubprocessRunner), so its start-up is
measured apart: a process that imports what the step imports and does nothing else. A step's
work is its time minus that start-up; the sum of the work is the floor a faster runner could
reach. Target: the warm run under 20 s end to end on this machine, printed beside that floor.
"""

from __future__ import annotations

import json
import os
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
                       "kfkit.components.evaluate.evaluate; "
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


def run(root: Path) -> tuple[float, dict]:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "kfkit.cli", "run", "training", "--local", "--local-root", str(root)],
                   cwd=REPO, check=True, capture_output=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    seconds = time.perf_counter() - started
    latest = max((root / "runs").glob("*/summary.json"), key=lambda p: p.stat().st_mtime)
    return seconds, json.loads(latest.read_text())


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="kfkit-bench-pipeline-"))
    cold_s, cold = run(root)
    warm_s, warm = run(root)
    starts = {name: startup(imports) for name, imports in IMPORTS.items()}
    print(f"{'step':<28}{'cold s':>8}{'warm s':>8}{'start-up s':>12}{'work s':>8}")
    floor = 0.0
    cold_steps = {s["name"]: s["seconds"] for s in cold["steps"]}
    for step in warm["steps"]:
        name = step["name"]
        start = starts.get(name, 0.0)
        work = max(step["seconds"] - start, 0.0)
        floor += work
        print(f"{name:<28}{cold_steps.get(name, 0.0):>8.1f}{step['seconds']:>8.1f}{start:>12.1f}{work:>8.1f}")
    steps_total = sum(s["seconds"] for s in warm["steps"])
    print(f"\ncold run end to end: {cold_s:.1f}s ({cold['decision']}); warm run: {warm_s:.1f}s ({warm['decision']}); "
          f"target < 20 s")
    print(f"warm run: steps {steps_total:.1f}s, of which start-up {steps_total - floor:.1f}s; "
          f"the floor (sum of the steps' work) {floor:.1f}s; the rest ({warm_s - steps_total:.1f}s) is the CLI "
          "itself, kfp.local between steps and recording the run in MLflow")


if __name__ == "__main__":
    main()
