"""Attribution drift's false alarms and power on the penguin model: a simulation.

    python benchmarks/attribution_guard.py [--windows 100]

Trains the penguin model on the train split of the sample table (as tests/conftest.py does), explains
the train split once as the baseline (seed 0, as the monitor does), then draws windows of n rows with
replacement from the whole table (in distribution: any alarm is a false alarm) and the same windows
with flipper_length_mm + 40 and body_mass_g + 1500 (shifted), and with culmen_length_mm null in every
row (lost: the feature's coverage is gone, which the distribution verdicts cannot see, since they leave
missing values out; Google's own attribution drift story). For each it prints the share of windows
in which any feature's attribution score moved by more than each threshold (components/monitor/
attribution.py), and the seconds one side costs (SAMPLE_ROWS rows x PATH_COUNT paths).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PENGUINS = "SELECT * FROM `bigquery-public-data.ml_datasets.penguins` WHERE species IS NOT NULL AND body_mass_g IS NOT NULL"
THRESHOLDS = [0.05, 0.1, 0.15, 0.2, 0.3]
SIZES = [100, 200, 500]
SHIFT = {"flipper_length_mm": 40.0, "body_mass_g": 1500.0}


def penguin_model(root: Path) -> tuple[Path, pa.Table]:
    from kfkit.components.ingest.ingest import SPLIT_NAMES, SplitSpec, run_ingest
    from kfkit.components.train.train import Hyperparameters, train
    from kfkit.components.validate.validate import validate

    splits = {name: root / f"{name}_data" for name in SPLIT_NAMES}
    run_ingest(PENGUINS, splits, split=SplitSpec({"train": 0.8, "eval": 0.1, "test": 0.1}, "*"),
               label_column="species", local_root=str(root))
    validation = validate(splits, "species")
    train(splits["train"], splits["eval"], validation.statistics, validation.schema, "species", root / "model",
          Hyperparameters(epochs=40, seed=7))
    return root / "model", pads.dataset(str(splits["train"]), format="parquet").to_table()


def main() -> None:
    from kfkit.components.monitor import attribution
    from kfkit.serving.model_io import LoadedModel
    from kfkit.warehouse.local import LocalWarehouse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=100)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="kfkit-attribution-guard-"))
    warehouse = LocalWarehouse(root)
    warehouse.ensure_sample_data()
    model_dir, train_rows = penguin_model(root)
    model = LoadedModel(model_dir)
    table = pa.Table.from_batches(list(warehouse.query_batches(PENGUINS))).drop(["species"]).to_pylist()
    started = time.perf_counter()
    baseline = attribution.profile(model, train_rows, seed=0)
    seconds = time.perf_counter() - started
    print(f"baseline: {baseline.rows} training rows explained in {seconds:.2f} s "
          f"({attribution.SAMPLE_ROWS} rows x {attribution.PATH_COUNT} paths x {len(baseline.mean_abs) + 1} steps)")
    print("scores: " + ", ".join(f"{f} {s:.3f}" for f, s in baseline.scores.items()))
    rng = np.random.default_rng(0)
    print(f"\nshare of {args.windows} windows with any feature's attribution score distance over the threshold")
    print(f"{'n':>5} {'window':>12}" + "".join(f"{t:>8}" for t in THRESHOLDS) + "   largest distance (median, max)")
    for n in SIZES:
        for scenario in ("in-dist", "shifted", "lost"):
            largest = []
            for _ in range(args.windows):
                rows = [dict(table[i]) for i in rng.integers(0, len(table), size=n)]
                for row in rows:
                    if scenario == "shifted":
                        for name, delta in SHIFT.items():
                            row[name] = (row[name] or 0.0) + delta
                    elif scenario == "lost":
                        row["culmen_length_mm"] = None
                window = attribution.profile(model, rows, seed=1)
                largest.append(max(abs(window.scores[f] - baseline.scores[f]) for f in baseline.scores))
            largest = np.array(largest)
            print(f"{n:>5} {scenario:>12}"
                  + "".join(f"{np.mean(largest > t):>8.3f}" for t in THRESHOLDS)
                  + f"   {np.median(largest):.3f}, {largest.max():.3f}")


if __name__ == "__main__":
    main()
