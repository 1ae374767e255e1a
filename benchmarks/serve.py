"""Online serving: kfkit's model server versus `mlflow models serve` on the same model, one run.

    python benchmarks/serve.py [--seconds 3]

Trains the penguins model, registers it in a scratch MLflow registry and deploys it to a scratch
local endpoint, then starts (a) `kfkit serve` and (b) `mlflow models serve` on 127.0.0.1 and
drives each with a closed-loop load generator (N threads, keep-alive connections, each sending the
next request when the last answer arrives) at concurrency 1, 8 and 32, with batches of 1 and 32
instances. Two more rows: the same model's predict called in-process (the floor any server adds
overhead to), kfkit at concurrency 8 while 1,000 idle connections are held open, and kfkit's
/explain (sampled Shapley, 10 paths) at concurrency 1.
Prints requests/s, p50 and p99 latency, and the ratio to kfkit.
Targets: >= 3x MLflow's throughput at concurrency 8; p99 < 25 ms for single instances at
concurrency 8; at concurrency 1 >= 50% of the in-process rate; with 1,000 idle connections,
requests/s and p99 within 20% of the row without them.
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
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
PENGUIN = {"island": "Biscoe", "culmen_length_mm": 47.5, "culmen_depth_mm": 15.0, "flipper_length_mm": 218.0,
           "body_mass_g": 4950.0, "sex": "FEMALE"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port: int, path: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server on port {port} exited early; see its log")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("server did not become healthy")


def load(port: int, path: str, body: bytes, concurrency: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        while time.monotonic() < stop:
            start = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                answer = response.read()
            except (OSError, http.client.HTTPException):
                errors[0] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            mine.append(time.perf_counter() - start)
            if response.status != 200:
                errors[0] += 1
                if errors[0] == 1:
                    print(f"  first error from port {port}: {response.status} {answer[:300]!r}", flush=True)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    ms = np.array(latencies or [float("nan")]) * 1000
    return {"rps": len(ms) / elapsed, "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
            "errors": errors[0]}


def in_process(model_dir: str, seconds: float) -> dict:
    from kfkit.serving.model_io import LoadedModel

    model = LoadedModel(model_dir)
    for _ in range(20):
        model.predict_instances([PENGUIN])
    latencies = []
    stop = time.monotonic() + seconds
    began = time.perf_counter()
    while time.monotonic() < stop:
        start = time.perf_counter()
        model.predict_instances([PENGUIN])
        latencies.append(time.perf_counter() - start)
    elapsed = time.perf_counter() - began
    ms = np.array(latencies) * 1000
    return {"rps": len(ms) / elapsed, "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
            "errors": 0}


def with_idle_connections(port: int, path: str, body: bytes, seconds: float, idle: int = 1000) -> dict:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, idle + 1024), hard), hard))
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(idle)]
    try:
        return load(port, path, body, 8, seconds)
    finally:
        for sock in sockets:
            sock.close()


def prepare(root: Path) -> dict:
    from kfkit.components.ingest.ingest import SPLIT_NAMES, SplitSpec, run_ingest
    from kfkit.components.register.register import register_model
    from kfkit.components.train.train import Hyperparameters, train
    from kfkit.components.validate.validate import validate
    from kfkit.serving.endpoints import LocalEndpoints

    splits = {n: root / "splits" / n for n in SPLIT_NAMES}
    run_ingest("SELECT * FROM `bigquery-public-data.ml_datasets.penguins` WHERE body_mass_g IS NOT NULL", splits,
               split=SplitSpec({"train": 0.8, "eval": 0.1, "test": 0.1}), label_column="species", local_root=str(root))
    v = validate(splits, "species")
    train(splits["train"], splits["eval"], v.statistics, v.schema, "species", root / "model", Hyperparameters(epochs=20))
    meta = register_model(str(root / "model"), model_name="penguins", local_root=str(root))
    LocalEndpoints(root).deploy("penguins", "penguins", meta["version"], meta["model_dir"])
    return meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="load duration per configuration")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    scratch = Path(tempfile.mkdtemp(prefix="kfkit-bench-serve-"))
    processes = []
    try:
        print("training and registering the penguins model ...", flush=True)
        meta = prepare(scratch)
        # mlflow starts uvicorn by name: the environment's bin directory must be on PATH
        env = dict(os.environ, MLFLOW_TRACKING_URI=meta["tracking_uri"], KFKIT_LOCAL_ROOT=str(scratch),
                   PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        servers = {}
        # server output goes to files: an unread pipe fills up and blocks a server that logs each request
        logs = {name: open(scratch / f"{name}.log", "w") for name in ("kfkit", "mlflow")}
        port = free_port()
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "kfkit.cli", "serve", "--endpoint", "penguins", "--port", str(port),
             "--log-sample-rate", "1.0"], cwd=REPO, env=env, stdout=logs["kfkit"], stderr=subprocess.STDOUT, text=True))
        servers["kfkit serve"] = (port, "/health", "/predict", processes[-1])
        port = free_port()
        mlflow_bin = Path(sys.executable).parent / "mlflow"
        processes.append(subprocess.Popen(
            [str(mlflow_bin), "models", "serve", "-m", f"models:/penguins/{meta['version']}", "--env-manager", "local",
             "-h", "127.0.0.1", "-p", str(port)], cwd=scratch, env=env, stdout=logs["mlflow"],
            stderr=subprocess.STDOUT, text=True))
        servers["mlflow models serve"] = (port, "/ping", "/invocations", processes[-1])
        for name, (port, health, _, process) in servers.items():
            wait_healthy(port, health, process)
            print(f"{name} is up on port {port}", flush=True)

        results = {}
        for batch in (1, 32):
            body = json.dumps({"instances": [PENGUIN] * batch}).encode()
            for concurrency in (1, 8, 32):
                for name, (port, _, predict, _) in servers.items():
                    load(port, predict, body, concurrency, 0.5)  # warm-up: first calls trace the model
                    results[(name, batch, concurrency)] = load(port, predict, body, concurrency, args.seconds)

        single = json.dumps({"instances": [PENGUIN]}).encode()
        kfkit_port = servers["kfkit serve"][0]
        # side by side: the same load without, with, and again without the idle connections
        before = load(kfkit_port, "/predict", single, 8, args.seconds)
        results[("kfkit serve + 1000 idle conns", 1, 8)] = with_idle_connections(kfkit_port, "/predict", single,
                                                                                args.seconds)
        after = load(kfkit_port, "/predict", single, 8, args.seconds)
        results[("kfkit serve, around that row", 1, 8)] = {
            key: (before[key] + after[key]) / 2 for key in ("rps", "p50", "p99", "errors")}
        results[("in-process predict (floor)", 1, 1)] = in_process(meta["model_dir"], args.seconds)
        # an explanation costs paths x (features + 1) predictions: 10 x 7 = 70 rows per instance here
        load(kfkit_port, "/explain", single, 1, 0.5)
        results[("kfkit serve /explain, 10 paths", 1, 1)] = load(kfkit_port, "/explain", single, 1, args.seconds)

        print(f"\n{'server':<30}{'batch':>6}{'conc':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'vs kfkit':>10}")
        for (name, batch, concurrency), r in results.items():
            base = results[("kfkit serve", batch, concurrency)]["rps"]
            print(f"{name:<30}{batch:>6}{concurrency:>6}{r['rps']:>10.0f}{r['p50']:>9.1f}{r['p99']:>9.1f}"
                  f"{r['errors']:>8}{r['rps'] / base:>9.2f}x")
        k8 = results[("kfkit serve", 1, 8)]["rps"] / results[("mlflow models serve", 1, 8)]["rps"]
        p99 = results[("kfkit serve", 1, 8)]["p99"]
        floor = results[("kfkit serve", 1, 1)]["rps"] / results[("in-process predict (floor)", 1, 1)]["rps"]
        idle = results[("kfkit serve + 1000 idle conns", 1, 8)]
        plain = results[("kfkit serve, around that row", 1, 8)]
        print(f"\nkfkit / MLflow throughput at concurrency 8, batch 1: {k8:.1f}x (target >= 3x)")
        print(f"kfkit p99, single-instance requests at concurrency 8: {p99:.1f} ms (target < 25 ms)")
        print(f"kfkit at concurrency 1 / in-process predict: {floor:.0%} (target >= 50%)")
        print(f"with 1,000 idle connections: req/s {idle['rps'] / plain['rps']:.0%}, p99 "
              f"{idle['p99'] / plain['p99']:.0%} of the runs just before and after without them (target within 20%)")
        print("Vertex's Custom Prediction Routines server: not measured here (its local run needs a Docker "
              "image built by LocalModel.build_cpr_model)")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
