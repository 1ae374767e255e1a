"""How many values a feature needs before the monitor's verdict means something: a simulation.

    python benchmarks/monitor_guard.py [--windows 300]

Windows of n rows are drawn (with replacement) from the training data itself, so any alarm is a
false alarm. Each window is compared with the whole training data as the monitor does (TFDV's
JS divergence / L-infinity, threshold 0.3), on the sample tables: Palmer penguins and the Chicago
taxi sample. Prints the false-alarm rate per window size (the share of windows in which at least
one feature crosses 0.3) and the smallest n with a rate of at most 1%: the monitor's default
`min_count` is chosen from this table (docs/monitoring.md).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TABLES = {
    "penguins": "SELECT island, culmen_length_mm, culmen_depth_mm, flipper_length_mm, body_mass_g, sex "
                "FROM `bigquery-public-data.ml_datasets.penguins`",
    "taxi": "SELECT trip_miles, trip_seconds, fare, payment_type, company, pickup_community_area, "
            "EXTRACT(HOUR FROM trip_start_timestamp) AS hour FROM `bigquery-public-data.chicago_taxi_trips.taxi_trips`",
}
SIZES = [5, 10, 20, 50, 100, 150, 200, 300, 500]


def main() -> None:
    from kfkit.components.monitor import drift
    from kfkit.warehouse.local import LocalWarehouse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=300)
    parser.add_argument("--threshold", type=float, default=0.3)
    args = parser.parse_args()
    warehouse = LocalWarehouse(tempfile.mkdtemp(prefix="kfkit-guard-"))
    warehouse.ensure_sample_data()
    rng = np.random.default_rng(0)
    print(f"false-alarm rate: share of {args.windows} in-distribution windows with any feature over "
          f"{args.threshold} (missing values excluded, as the monitor does)\n")
    columns = [(t, m) for m in drift.METHODS for t in TABLES]
    print(f"{'n':>5}" + "".join(f"{t + ' ' + m:>24}" for t, m in columns))
    rates: dict[tuple[str, str], dict[int, float]] = {c: {} for c in columns}
    data = {}
    for name, query in TABLES.items():
        table = pa.Table.from_batches(list(warehouse.query_batches(query)))
        baseline = drift.baseline_from_columns(drift.columns_of(table))
        data[name] = (table, baseline)
    worst: dict[tuple[str, str], dict[str, int]] = {c: {} for c in columns}
    for n in SIZES:
        line = f"{n:>5}"
        for name, method in columns:
            table, baseline = data[name]
            alarms = 0
            for _ in range(args.windows):
                window = table.take(pa.array(rng.integers(0, table.num_rows, size=n)))
                results = drift.compare(baseline, drift.columns_of(window), default_threshold=args.threshold,
                                        min_count=0, method=method)
                drifted = [r.feature for r in results if r.status == drift.DRIFT]
                alarms += bool(drifted)
                for feature in drifted:
                    worst[(name, method)][feature] = worst[(name, method)].get(feature, 0) + 1
            rates[(name, method)][n] = alarms / args.windows
            line += f"{rates[(name, method)][n]:>24.3f}"
        print(line)
    print("\nfeatures alarming most (all sizes):")
    for column, counts in worst.items():
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
        print(f"  {column[0]} {column[1]}: " + (", ".join(f"{f} {c}" for f, c in top) or "none"))
    for method in drift.METHODS:
        stable = [t for t in TABLES if rates[(t, method)][SIZES[-1]] <= 0.01]
        smallest = next((n for n in SIZES if all(rates[(t, method)][n] <= 0.01 for t in stable)), None)
        print(f"{method}: tables where in-distribution windows stop alarming: {', '.join(stable) or 'none'}; "
              f"smallest n with at most 1% false alarms on them: {smallest}")
    print(f"kfkit's default min_count: {drift.DEFAULT_MIN_COUNT}")


if __name__ == "__main__":
    main()
