"""Training throughput: the tf.data input pipeline alone versus a full training epoch, one run.

    python benchmarks/train.py [--rows 1000000] [--batch-size 1024]

1 M synthetic rows x 20 features (16 numeric, 4 categorical) are ingested to Parquet shards, then
(a) the input pipeline is drained on its own and (b) the model trains one epoch on it. Target: the
input pipeline runs >= 3x faster than training consumes examples (the model is the bottleneck).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=1024)
    args = parser.parse_args()

    from kfkit.components.ingest.ingest import SPLIT_NAMES, SplitSpec, run_ingest
    from kfkit.components.train.train import Hyperparameters, build_model, make_dataset
    from kfkit.components.validate.validate import validate
    from kfkit.warehouse import synthetic
    from kfkit.tabular import build_spec
    from kfkit.warehouse.local import LocalWarehouse

    logging.disable(logging.WARNING)
    scratch = Path(tempfile.mkdtemp(prefix="kfkit-bench-train-"))
    try:
        synthetic.write_to_warehouse(LocalWarehouse(scratch), "bench.rows", args.rows, numeric=16, categorical=4)
        splits = {n: scratch / n for n in SPLIT_NAMES}
        run_ingest("SELECT * FROM bench.rows", splits, label_column="label", local_root=str(scratch),
                   split=SplitSpec({"train": 0.98, "eval": 0.01, "test": 0.01}, "id"), shard_rows=250_000)
        v = validate(splits, "label")
        spec = build_spec(v.statistics, v.schema, "label", exclude=["id"])
        train_rows = v.split_rows["train"]

        import numpy as np
        # TensorFlow's one-time start-up (graph runtime, tracing) is paid before either timing
        make_dataset(splits["eval"], spec, args.batch_size).reduce(np.int64(0), lambda count, _: count + 1)
        # drained inside TensorFlow (reduce), as fit consumes it: a Python for-loop would measure
        # eager tensor conversion per batch instead of the pipeline
        start = time.perf_counter()
        batches = make_dataset(splits["train"], spec, args.batch_size, shuffle_seed=0).reduce(
            np.int64(0), lambda count, _: count + 1)
        input_seconds = time.perf_counter() - start

        model = build_model(spec, Hyperparameters(hidden_units=[64, 32]))
        start = time.perf_counter()
        model.fit(make_dataset(splits["train"], spec, args.batch_size, shuffle_seed=0), epochs=1, verbose=0)
        train_seconds = time.perf_counter() - start

        input_rate, train_rate = train_rows / input_seconds, train_rows / train_seconds
        print(f"rows in the training split: {train_rows:,} ({int(batches)} batches of {args.batch_size}); "
              f"features: {len(spec.features)}; model: dense 64-32")
        print(f"{'stage':<34}{'seconds':>10}{'examples/s':>14}")
        print(f"{'input pipeline alone (tf.data)':<34}{input_seconds:>10.1f}{input_rate:>14,.0f}")
        print(f"{'training step (input + model)':<34}{train_seconds:>10.1f}{train_rate:>14,.0f}")
        print(f"\ninput pipeline / training: {input_rate / train_rate:.1f}x (target >= 3x)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
