"""Drift computation speed: kfkit's monitor versus Evidently's data drift report, same data, one run.

    python benchmarks/monitor.py [--rows 1000000] [--evidently-timeout 600]

1 M baseline rows and 1 M target rows x 50 features (40 numeric, 10 categorical; the target has
five shifted features). kfkit: profile the baseline, all distances (JS divergence / L-infinity)
and the HTML report. Evidently: Report([DataDriftPreset()]).run(...) on the same pandas frames,
in a subprocess with a time limit. Targets: kfkit distances < 3 s; >= 10x faster than Evidently.
A second row: a 1 M-row window with 20 high-cardinality categoricals (50,000 values each) against
a 1 M-row baseline (TFDV's top-1,000 L-infinity).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
NUMERIC, CATEGORICAL = 40, 10


def make(rows: int, seed: int, shift: bool) -> pa.Table:
    rng = np.random.default_rng(seed)
    columns = {}
    for i in range(NUMERIC):
        columns[f"num_{i:02d}"] = rng.normal(loc=2.5 if shift and i < 3 else 0.0, size=rows)
    categories = np.array([f"c{j}" for j in range(20)])
    for i in range(CATEGORICAL):
        p = np.linspace(1, 2, 20)[::-1] ** (4 if shift and i < 2 else 1)
        columns[f"cat_{i:02d}"] = pa.array(categories[rng.choice(20, size=rows, p=p / p.sum())])
    return pa.table(columns)


def make_high_cardinality(rows: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    values = np.array([f"user-{j:06d}" for j in range(50_000)])
    return pa.table({f"id_{i:02d}": pa.array(values[rng.zipf(1.3, size=rows) % 50_000]) for i in range(20)})


def run_evidently(path: str) -> None:
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset

    reference = pd.read_parquet(path + "/baseline.parquet")
    current = pd.read_parquet(path + "/target.parquet")
    start = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(reference_data=reference, current_data=current)
    snapshot.save_html(path + "/evidently.html")
    print(json.dumps({"seconds": time.perf_counter() - start}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--evidently-timeout", type=float, default=600)
    parser.add_argument("--evidently-child")
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument("--evidently-python", default=sys.executable,
                        help="interpreter with evidently installed (Evidently 0.7 needs pandas < 3: "
                             "python -m venv /tmp/ev && /tmp/ev/bin/pip install evidently 'pandas<3' pyarrow)")
    args = parser.parse_args()
    if args.evidently_child:
        return run_evidently(args.evidently_child)

    from kfkit.components.monitor.drift import baseline_from_columns, columns_of, compare
    from kfkit.components.monitor.monitor import MonitorResult, render_report

    baseline, target = make(args.rows, 0, False), make(args.rows, 1, True)
    start = time.perf_counter()
    profiles = baseline_from_columns(columns_of(baseline))
    results = compare(profiles, columns_of(target))
    distances_s = time.perf_counter() - start
    html = render_report(MonitorResult(results, (0.0, 1.0), target.num_rows, "drift"))
    total_s = time.perf_counter() - start
    drifted = sorted(r.feature for r in results if r.anomalous)
    print(f"{args.rows:,} baseline + {args.rows:,} target rows x {NUMERIC + CATEGORICAL} features")
    print(f"kfkit: distances {distances_s:.2f}s (target < 3 s), with the HTML report {total_s:.2f}s "
          f"({len(html) // 1024} KB); drifted: {', '.join(drifted)}")

    high_base, high_target = make_high_cardinality(args.rows, 2), make_high_cardinality(args.rows, 3)
    start = time.perf_counter()
    high = compare(baseline_from_columns(columns_of(high_base)), columns_of(high_target))
    high_s = time.perf_counter() - start
    import pyarrow.compute as pc

    start = time.perf_counter()
    for table in (high_base, high_target):  # the floor: counting each column's values, nothing else
        for column in table.columns:
            pc.value_counts(column)
    floor_s = time.perf_counter() - start
    print(f"kfkit: {args.rows:,} + {args.rows:,} rows x 20 categoricals of 50,000 values: {high_s:.2f}s "
          f"(target < 1 s); largest L-infinity {max(r.distance for r in high):.4f}, drifted: "
          f"{sum(r.anomalous for r in high)}")
    print(f"floor: Arrow's value_counts of the same 40 columns, one thread: {floor_s:.2f}s "
          f"(kfkit x{high_s / floor_s:.2f})")
    if args.skip_evidently:
        return

    import pyarrow.parquet as pq

    scratch = Path(tempfile.mkdtemp(prefix="kfkit-bench-monitor-"))
    pq.write_table(baseline, scratch / "baseline.parquet")
    pq.write_table(target, scratch / "target.parquet")
    try:
        done = subprocess.run([args.evidently_python, __file__, "--evidently-child", str(scratch)],
                              capture_output=True, text=True, timeout=args.evidently_timeout)
        if done.returncode != 0:
            print(f"Evidently failed: {done.stderr.strip().splitlines()[-1] if done.stderr else done.returncode}")
            return
        evidently_s = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
        print(f"Evidently DataDriftPreset: {evidently_s:.1f}s")
        print(f"\nkfkit is {evidently_s / total_s:.1f}x faster (target >= 10x); distances {distances_s:.2f}s (target < 3 s)")
    except subprocess.TimeoutExpired:
        print(f"Evidently did not finish within {args.evidently_timeout:.0f}s: kfkit is > "
              f"{args.evidently_timeout / total_s:.0f}x faster")
    except ModuleNotFoundError:
        print("Evidently is not installed (pip install evidently) - no comparison")
    finally:
        import shutil
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
