"""Batch prediction throughput: kfkit's local batch prediction versus the model server row by row.

    python benchmarks/batch_predict.py [--rows 1000000] [--server-rows 2000]

Trains a model on synthetic data, registers it, then (a) scores a table of N rows with the
batch_predict logic (warehouse stream -> model -> new table) and (b) sends rows one request at a
time to `kfkit serve` (a sample of --server-rows rows; its rate is rows/s). Target: >= 20x.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--server-rows", type=int, default=2000)
    args = parser.parse_args()

    import logging
    logging.disable(logging.WARNING)
    from kfkit.components.batch_predict.batch_predict import predict_local
    from kfkit.components.ingest.ingest import SPLIT_NAMES, SplitSpec, run_ingest
    from kfkit.components.register.register import register_model
    from kfkit.components.train.train import Hyperparameters, train
    from kfkit.components.validate.validate import validate
    from kfkit.warehouse import synthetic
    from kfkit.warehouse.local import LocalWarehouse

    scratch = Path(tempfile.mkdtemp(prefix="kfkit-bench-batch-"))
    server = None
    try:
        warehouse = LocalWarehouse(scratch)
        synthetic.write_to_warehouse(warehouse, "bench.train", 100_000, seed=1)
        synthetic.write_to_warehouse(warehouse, "bench.score", args.rows, seed=2)
        splits = {n: scratch / n for n in SPLIT_NAMES}
        run_ingest("SELECT * FROM bench.train", splits, label_column="label", local_root=str(scratch),
                   split=SplitSpec({"train": 0.8, "eval": 0.1, "test": 0.1}, "id"))
        v = validate(splits, "label")
        train(splits["train"], splits["eval"], v.statistics, v.schema, "label", scratch / "model",
              Hyperparameters(epochs=2, batch_size=1024), exclude_columns=["id"])
        meta = register_model(str(scratch / "model"), model_name="bench", local_root=str(scratch))

        result = predict_local("local-project.bench.score", "bench.scored", model_name="bench", local_root=str(scratch))
        batch_rate = result["rows"] / result["seconds"]

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        log = open(scratch / "server.log", "w")
        server = subprocess.Popen([sys.executable, "-m", "kfkit.cli", "serve", "--model-dir", meta["model_dir"],
                                   "--port", str(port)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("server did not start")
                time.sleep(0.2)
        rows = [r for b in warehouse.query_batches(f"SELECT * EXCLUDE (id, label) FROM bench.score LIMIT {args.server_rows}")
                for r in b.to_pylist()]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for row in rows[:50]:  # warm-up
            conn.request("POST", "/predict", body=json.dumps({"instances": [row]}))
            conn.getresponse().read()
        start = time.perf_counter()
        for row in rows:
            conn.request("POST", "/predict", body=json.dumps({"instances": [row]}))
            response = conn.getresponse()
            response.read()
            assert response.status == 200
        server_rate = len(rows) / (time.perf_counter() - start)

        print(f"{'path':<42}{'rows':>12}{'rows/s':>12}")
        print(f"{'kfkit batch prediction (local)':<42}{result['rows']:>12,}{batch_rate:>12,.0f}")
        print(f"{'kfkit serve, one row per request':<42}{len(rows):>12,}{server_rate:>12,.0f}")
        print(f"\nbatch / row-by-row: {batch_rate / server_rate:.0f}x (target >= 20x)")
    finally:
        if server:
            server.terminate()
            server.wait(timeout=10)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
