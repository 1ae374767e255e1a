"""Training throughput: the tf.data input pipeline alone versus a full training epoch, one run.

    python benchmarks/train.py [--rows 1000000] [--batch-size 1024] [--worker-rows 200000]

1 M synthetic rows x 20 features (16 numeric, 4 categorical) are ingested to Parquet shards, then
(a) the input pipeline is drained on its own and (b) the model trains one epoch on it. Target: the
input pipeline runs >= 3x faster than training consumes examples (the model is the bottleneck).

Then train() itself on --worker-rows rows as 1, 2 and 3 local worker processes from TF_CONFIG
(MultiWorkerMirroredStrategy from 2 on), timing the second epoch (the first pays tracing), and a
worker killed after its first epoch and started again: how long until it trains again.
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


WORKER = """
import json, os, sys, time
import keras
sys.path.insert(0, sys.argv[1])
import kfkit.components.train.train as t

stats, schema, train_data, eval_data, batch, epochs, kill_after, checkpoints = sys.argv[2:10]
started = float(os.environ["BENCH_STARTED"])


class Clock(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        print("TRAIN_BEGIN", time.time() - started, flush=True)

    def on_epoch_begin(self, epoch, logs=None):
        self.begin = time.perf_counter()
        print("EPOCH_BEGIN", epoch, time.time() - started, flush=True)

    def on_epoch_end(self, epoch, logs=None):
        print("EPOCH", epoch, time.perf_counter() - self.begin, flush=True)
        if epoch == int(kill_after):
            os._exit(75)


t.train(train_data, eval_data, json.load(open(stats)), json.load(open(schema)), "label", None,
        t.Hyperparameters(hidden_units=[64, 32], epochs=int(epochs), batch_size=int(batch), patience=100, seed=1),
        exclude_columns=["id"], callbacks=[Clock()], verbose=0, checkpoint_dir=checkpoints or None)
"""


def run_workers(count: int, argv: list[str], env_extra: dict | None = None) -> list[str]:
    """count worker processes from one TF_CONFIG, as a CustomJob's pools run them: their outputs."""
    import json
    import socket
    import subprocess

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    cluster = {"worker": [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]}
    for s in sockets:
        s.close()
    procs = []
    for index in range(count):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
                   BENCH_STARTED=str(time.time()), **(env_extra or {}))
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, str(Path(__file__).resolve().parent.parent),
                                       *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    return [p.communicate()[0] for p in procs]


def multi_worker(scratch: Path, rows: int, batch_size: int) -> None:
    import json
    import re

    from kfkit.components.ingest.ingest import SPLIT_NAMES, SplitSpec, run_ingest
    from kfkit.components.validate.validate import validate
    from kfkit.warehouse import synthetic
    from kfkit.warehouse.local import LocalWarehouse

    root = scratch / "workers"
    synthetic.write_to_warehouse(LocalWarehouse(root), "bench.rows", rows, numeric=16, categorical=4)
    splits = {n: root / n for n in SPLIT_NAMES}
    # about six shards, so 1, 2 and 3 workers each read whole shards of their own (sharding by file)
    run_ingest("SELECT * FROM bench.rows", splits, label_column="label", local_root=str(root),
               split=SplitSpec({"train": 0.9, "eval": 0.05, "test": 0.05}, "id"), shard_rows=-(-rows * 9 // 60))
    v = validate(splits, "label")
    (root / "stats.json").write_text(json.dumps(v.statistics))
    (root / "schema.json").write_text(json.dumps(v.schema))
    train_rows = v.split_rows["train"]
    argv = [str(root / "stats.json"), str(root / "schema.json"), str(splits["train"]), str(splits["eval"]),
            str(batch_size)]
    print(f"\ntrain() on {len(list(splits['train'].glob('*.parquet')))} shards, {train_rows:,} training rows, "
          f"global batch {batch_size}, second epoch timed (TF_CONFIG workers on this machine):")
    print(f"{'workers':<10}{'epoch s':>10}{'examples/s':>14}{'vs 1':>8}")
    base = None
    for count in (1, 2, 3):
        outputs = run_workers(count, argv + ["2", "-1", ""])
        seconds = [float(m) for out in outputs for m in re.findall(r"^EPOCH 1 (\S+)", out, re.M)]
        if len(seconds) != count:
            print(f"{count:<10}failed:\n" + "\n".join(o[-1500:] for o in outputs))
            continue
        rate = train_rows / max(seconds)
        base = base or rate
        print(f"{count:<10}{max(seconds):>10.1f}{rate:>14,.0f}{rate / base:>8.2f}")

    checkpoints = scratch / "checkpoints"
    killed = run_workers(1, argv + ["3", "0", str(checkpoints)])[0]
    restarted = run_workers(1, argv + ["3", "-1", str(checkpoints)])[0]
    begin = re.search(r"^TRAIN_BEGIN (\S+)", restarted, re.M)
    first = re.search(r"^EPOCH_BEGIN (\d+) (\S+)", restarted, re.M)
    killed_epoch = re.search(r"^EPOCH 0 (\S+)", killed, re.M)
    if not (begin and first and killed_epoch):
        print("resume: failed\n" + killed[-1500:] + restarted[-1500:])
        return
    print(f"\nkilled after epoch 1 of 3 (one epoch: {float(killed_epoch[1]):.1f} s); restarted, it trains epoch "
          f"{int(first[1]) + 1} {float(first[2]):.1f} s after its process starts "
          f"(imports, data spec and the backup restored by {float(begin[1]):.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--worker-rows", type=int, default=200_000)
    parser.add_argument("--only-workers", action="store_true", help="skip the single-process rows")
    args = parser.parse_args()

    logging.disable(logging.WARNING)
    scratch = Path(tempfile.mkdtemp(prefix="kfkit-bench-train-"))
    try:
        if not args.only_workers:
            single_process(scratch, args)
        multi_worker(scratch, args.worker_rows, args.batch_size)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def single_process(scratch: Path, args) -> None:
    from kfkit.components.ingest.ingest import SPLIT_NAMES, SplitSpec, run_ingest
    from kfkit.components.train.train import Hyperparameters, build_model, make_dataset
    from kfkit.components.validate.validate import validate
    from kfkit.warehouse import synthetic
    from kfkit.tabular import build_spec
    from kfkit.warehouse.local import LocalWarehouse

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


if __name__ == "__main__":
    main()
