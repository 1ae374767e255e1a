"""Online serving: kfkit's model server against the Python model servers, on the same SavedModel, one run.

    python benchmarks/serve.py [--seconds 1.5] [--passes 4] [--rounds 16] [--only kfkit,KServe,...]

Trains the penguins model, registers it in a scratch MLflow registry and deploys it to a scratch
local endpoint, then serves that one SavedModel with, each as one worker on 127.0.0.1:
  kfkit serve                      (request logging on: every request's record written)
  kfkit serve, no request log      (--log-sample-rate 0: what the log costs)
  kfkit serve --no-access-log      (closely paired rounds only: what the access log's line costs)
  kfkit serve, no request log, again  (closely paired rounds only: a second process of the same
                                   server, how far two processes of one server differ)
  KServe ModelServer               (kserve.Model subclass, V1 protocol {"instances": [...]})
  Seldon MLServer                  (custom runtime, an MLModel subclass; V2 protocol, Pandas codec)
  BentoML                          (@bentoml.service, workers=1, one @bentoml.api)
  LitServe                         (LitAPI, workers_per_device=1)
  mlflow models serve              (the registered pyfunc)
Each peer is installed by this script into its own virtualenv under ~/.cache/kfkit-bench (pip from
PyPI, with the TensorFlow kfkit runs; reused when its requirements have not changed) and runs the
code in benchmarks/serve_peers/: what each one's docs give for a custom Python model.
A peer that cannot be installed here gets a row saying why.

One load generator (this process: threads, one keep-alive socket each, a request sent as soon as
the last answer is read; plain sockets, so the client costs each server the same few microseconds)
drives each server at concurrency 1, 8 and 32 with 1, 8 and 64 instances per request. Passes are
interleaved: every pass runs every configuration on every server, in a rotated order, and a row
is all passes together. The floor: the model's own predict called in-process (kfkit's
LoadedModel.predict_instances, which kfkit's answer is built on) at each batch size, in a process
of its own with TensorFlow set up as kfkit serve sets it up (serve_peers/floor.py). The other
limit: the HTTP exchange alone (serve_peers/exchange_server.py: kfkit's HTTP stack answering each
body with kfkit's answer to it, unread), what one request costs the load generator, the loopback
and the stack; one request at a time, no server can beat the predict and the exchange in turn.
Also kfkit at concurrency 8 while 1,000 idle connections are held open.

The targets' ratios are measured a second way, closely paired (--rounds, 16 by default): this
machine's speed drifts over seconds, and a pass runs a configuration and its counterpart seconds
apart. Each round runs them 0.3 s each back to back in a rotated order (the floor, kfkit one
request at a time and the exchange; kfkit with its logs, without its request log (twice, in two
processes) and without its access log on each row), so a slow moment falls on all of them, and a
figure is the mean of the rounds' ratios with its 95% interval. Two processes of the very same
server differ by a few percent on this kind of machine (where each lands in memory and on the
cores): the second one without the request log measures that spread, the control for the log's
cost, which is also given against both. The
request log's writer thread is also measured on its own (its CPU, read from /proc by its name).

Targets: kfkit ahead of every peer on every row; request logging costs at most 5% of throughput at
any batch size; one request at a time >= 0.7 of the in-process rate; 64 instances at concurrency 8
>= 0.7 of the in-process rate for 64 instances.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
PEERS_DIR = Path(__file__).resolve().parent / "serve_peers"
sys.path.insert(0, str(REPO))
from kfkit.serving.server import WRITER_THREAD  # noqa: E402 - the request log's thread, as the OS names it

CACHE = Path(os.environ.get("KFKIT_BENCH_CACHE", Path.home() / ".cache" / "kfkit-bench"))
PENGUIN = {"island": "Biscoe", "culmen_length_mm": 47.5, "culmen_depth_mm": 15.0, "flipper_length_mm": 218.0,
           "body_mass_g": 4950.0, "sex": "FEMALE"}
BATCHES = (1, 8, 64)
CONCURRENCY = (1, 8, 32)
KFKIT, KFKIT_NO_LOG = "kfkit serve", "kfkit serve, no request log"
KFKIT_NO_ACCESS = "kfkit serve --no-access-log"  # closely paired with kfkit serve only, not in the table
KFKIT_TWIN = "kfkit serve, no request log, again"  # the same, a second process: the paired rounds' control
PAIRED_S = 0.3  # seconds of each configuration in a closely paired round
FLOOR = "in-process predict (floor)"
EXCHANGE = "HTTP exchange alone (limit)"

# each peer: its virtualenv under CACHE, what pip installs there (TensorFlow added), its distribution
PEERS = {
    "KServe ModelServer": ("kserve", ["kserve==0.21.*"], "kserve"),
    # MLServer 1.7's inference worker calls asyncio.get_event_loop(), which uvloop 0.22 made raise:
    # with the newest uvloop its worker dies at start, so the last uvloop it works with
    "Seldon MLServer": ("mlserver", ["mlserver", "uvloop<0.22"], "mlserver"),
    "BentoML": ("bentoml", ["bentoml"], "bentoml"),
    "LitServe": ("litserve", ["litserve"], "litserve"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def install(venv_name: str, requirements: list[str], dist: str) -> tuple[Path | None, str]:
    """(the peer's python, its version) or (None, why it could not be installed)."""
    venv = CACHE / venv_name
    python = venv / "bin" / "python"
    marker = venv / ".kfkit-bench-requirements"
    wanted = "\n".join(requirements)
    if not (python.exists() and marker.exists() and marker.read_text() == wanted):
        print(f"installing {' '.join(requirements)} into {venv} ...", flush=True)
        CACHE.mkdir(parents=True, exist_ok=True)
        made = subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], capture_output=True, text=True)
        if made.returncode != 0:
            return None, f"venv failed: {made.stderr.strip()[-200:]}"
        pip = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
                             capture_output=True, text=True)
        if pip.returncode != 0:
            errors = [line for line in pip.stderr.splitlines() if "ERROR" in line] or pip.stderr.splitlines()[-1:]
            return None, f"pip install failed on Python {sys.version.split()[0]}: {' '.join(errors)[:300]}"
        marker.write_text(wanted)
    found = subprocess.run([str(python), "-c", f"from importlib.metadata import version; print(version({dist!r}))"],
                           capture_output=True, text=True)
    if found.returncode != 0:
        return None, f"{dist} does not import: {found.stderr.strip()[-200:]}"
    return python, found.stdout.strip()


def wait_healthy(port: int, path: str, process: subprocess.Popen, name: str = "the server", timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited early (code {process.returncode}); see its log")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
                if read_response(sock, bytearray())[0] == 200:
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{name} did not become healthy in {timeout:.0f} s")


def read_response(sock: socket.socket, buf: bytearray) -> tuple[int, bytes, bool]:
    """(status, body, whether the server closes) of one HTTP/1.1 response; what follows stays in buf."""
    while (end := buf.find(b"\r\n\r\n")) < 0:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response")
        buf += chunk
    head = bytes(buf[:end]).lower()
    del buf[:end + 4]
    status = int(head[9:12])
    if b"transfer-encoding: chunked" in head:
        body = bytearray()
        while True:
            while (line_end := buf.find(b"\r\n")) < 0:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed in a chunked body")
                buf += chunk
            size = int(bytes(buf[:line_end]).split(b";")[0], 16)
            del buf[:line_end + 2]
            while len(buf) < size + 2:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed in a chunk")
                buf += chunk
            body += buf[:size]
            del buf[:size + 2]
            if size == 0:
                break
    else:
        at = head.find(b"content-length:")
        length = int(head[at + 15:head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None]) if at >= 0 else 0
        while len(buf) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed in a body")
            buf += chunk
        body = bytes(buf[:length])
        del buf[:length]
    return status, bytes(body), b"connection: close" in head


def load(port: int, path: str, body: bytes, concurrency: int, seconds: float) -> dict:
    request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    go = threading.Event()
    stop = [0.0]

    def worker():
        sock, buf, mine = None, bytearray(), []
        go.wait()
        while time.monotonic() < stop[0]:
            began = time.perf_counter()
            try:
                if sock is None:
                    sock, buf = socket.create_connection(("127.0.0.1", port), timeout=30), bytearray()
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(request)
                status, answer, close = read_response(sock, buf)
            except (OSError, ValueError):
                errors[0] += 1
                if sock is not None:
                    sock.close()
                sock = None
                continue
            mine.append(time.perf_counter() - began)
            if close:
                sock.close()
                sock = None
            if status != 200:
                errors[0] += 1
                if errors[0] == 1:
                    print(f"  first error from port {port}: {status} {answer[:300]!r}", flush=True)
        if sock is not None:
            sock.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    began = time.perf_counter()
    stop[0] = time.monotonic() + seconds
    go.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    return {"n": len(latencies), "seconds": elapsed, "latencies": latencies, "errors": errors[0]}


def cpu_seconds(pid: int) -> float:
    """A process's CPU time so far, every thread's, user and system: what a request costs the server,
    which other processes on a busy machine change far less than its throughput. In nanoseconds from
    each thread's /proc/PID/task/TID/schedstat where the kernel keeps it (its threads live as long
    as it does), else /proc/PID/stat's 10 ms ticks (too coarse for a 0.3 s round)."""
    total, tasks = 0, 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
            tasks += 1
        except (OSError, ValueError, IndexError):
            tasks = 0
            break
    if tasks:
        return total / 1e9
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid: int, name: str) -> float:
    """The CPU time so far of a process's threads the OS knows by `name` (/proc/PID/task/*/comm)."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().strip() == name:
                total += int((task / "schedstat").read_text().split()[0]) / 1e9
        except OSError:  # the thread ended meanwhile
            pass
    return total


def turns(port: int) -> tuple[int, int]:
    """kfkit serve's turns of the loop whose requests were predicted together, and their requests (/metrics)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        text = read_response(sock, bytearray())[1].decode()
    values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return int(values["kfkit_predict_turns_total"]), int(values["kfkit_predict_turn_requests_total"])


def load_with_cpu(server: dict, body: bytes, concurrency: int, seconds: float) -> dict:
    """load(), with the server's CPU seconds over the run (kfkit's servers: their process is the server)
    and its requests per model call (the turns of its loop that predicted requests together)."""
    pid = server["process"].pid
    turns_before = turns(server["port"])
    before, log_before = cpu_seconds(pid), thread_cpu_seconds(pid, WRITER_THREAD)
    result = load(server["port"], server["predict"], body, concurrency, seconds)
    result["cpu"] = cpu_seconds(pid) - before
    result["log_cpu"] = thread_cpu_seconds(pid, WRITER_THREAD) - log_before
    turns_after = turns(server["port"])
    result["turns"] = turns_after[0] - turns_before[0]
    result["turn_requests"] = turns_after[1] - turns_before[1]
    return result


def with_interval(values, spec: str, more: str = "") -> str:
    """The mean of values and its 95% interval (normal, from their spread), each formatted by spec;
    `more` goes inside the parentheses, after the interval."""
    values = np.array(values, dtype=float)
    mean = values.mean()
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
    return f"{mean:{spec}} (95% interval {mean - half:{spec}} to {mean + half:{spec}}{more})"


def in_process(model, batch: int, seconds: float) -> dict:
    instances = [PENGUIN] * batch
    for _ in range(10):
        model.predict_instances(instances)
    latencies = []
    stop = time.monotonic() + seconds
    began = time.perf_counter()
    while time.monotonic() < stop:
        start = time.perf_counter()
        model.predict_instances(instances)
        latencies.append(time.perf_counter() - start)
    return {"n": len(latencies), "seconds": time.perf_counter() - began, "latencies": latencies, "errors": 0}


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


def merged(runs: list[dict]) -> dict:
    """Passes together: requests over seconds, percentiles over every latency."""
    n, seconds = sum(r["n"] for r in runs), sum(r["seconds"] for r in runs)
    ms = np.array([x for r in runs for x in r["latencies"]] or [float("nan")]) * 1000
    return {"rps": n / seconds if seconds else 0.0, "p50": float(np.percentile(ms, 50)),
            "p99": float(np.percentile(ms, 99)), "errors": sum(r["errors"] for r in runs)}


def v1_body(batch: int) -> bytes:
    return json.dumps({"instances": [PENGUIN] * batch}).encode()


def v2_body(batch: int) -> bytes:
    """The same instances in the V2 inference protocol, one named input per column (MLServer's Pandas codec)."""
    inputs = []
    for name, value in PENGUIN.items():
        text = isinstance(value, str)
        inputs.append({"name": name, "shape": [batch], "datatype": "BYTES" if text else "FP32", "data": [value] * batch,
                       **({"parameters": {"content_type": "str"}} if text else {})})
    return json.dumps({"parameters": {"content_type": "pd"}, "inputs": inputs}).encode()


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


def start_peer(name: str, python: Path, scratch: Path, model_dir: str, env: dict, log) -> dict:
    port = free_port()
    peer_env = {k: v for k, v in env.items() if k != "PYTHONPATH"} | {"PENGUIN_MODEL_DIR": model_dir}
    bin_dir = python.parent
    if name == "KServe ModelServer":
        command = [str(python), str(PEERS_DIR / "kserve_server.py"), "--model_dir", model_dir, "--http_port", str(port),
                   "--grpc_port", str(free_port()), "--workers", "1"]
        cwd, health, predict, body = PEERS_DIR, "/v1/models/penguins", "/v1/models/penguins:predict", v1_body
    elif name == "Seldon MLServer":
        cwd = scratch / "mlserver"
        cwd.mkdir(exist_ok=True)
        for file in ("mlserver_runtime.py", "penguin_model.py"):
            shutil.copy(PEERS_DIR / file, cwd / file)
        (cwd / "model-settings.json").write_text(json.dumps({
            "name": "penguins", "implementation": "mlserver_runtime.Penguins", "parameters": {"uri": model_dir}}))
        # parallel_workers stays MLServer's default (1): one inference worker process
        (cwd / "settings.json").write_text(json.dumps({
            "host": "127.0.0.1", "http_port": port, "grpc_port": free_port(), "metrics_port": free_port()}))
        command = [str(bin_dir / "mlserver"), "start", str(cwd)]
        health, predict, body = "/v2/models/penguins/ready", "/v2/models/penguins/infer", v2_body
    elif name == "BentoML":
        command = [str(bin_dir / "bentoml"), "serve", "bentoml_service:Penguins", "--host", "127.0.0.1",
                   "--port", str(port)]
        cwd, health, predict, body = PEERS_DIR, "/readyz", "/predict", v1_body
    else:  # LitServe
        command = [str(python), str(PEERS_DIR / "litserve_server.py"), str(port)]
        cwd, health, predict, body = PEERS_DIR, "/health", "/predict", v1_body
    process = subprocess.Popen(command, cwd=cwd, env=peer_env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    return {"port": port, "health": health, "predict": predict, "body": body, "process": process}


def stop(processes: list[subprocess.Popen]) -> None:
    """Each server's whole process group (several start workers): SIGTERM, then SIGKILL."""
    import signal

    for process in processes:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 15
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="load duration per configuration and pass")
    parser.add_argument("--passes", type=int, default=4, help="interleaved passes over every configuration")
    parser.add_argument("--rounds", type=int, default=16,
                        help="closely paired rounds per row for the one-at-a-time ratio and the request log's cost")
    parser.add_argument("--only", default="", help="comma-separated servers to run besides kfkit (default: all)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results-serve.txt"),
                        help="where the full output is written too ('' for nowhere)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    scratch = Path(tempfile.mkdtemp(prefix="kfkit-bench-serve-"))
    processes: list[subprocess.Popen] = []
    output: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        output.append(line)

    try:
        # kfkit's environment may hold tensorflow-cpu; the peers get `tensorflow` of the same version
        tf_version = version("tensorflow") if _installed("tensorflow") else version("tensorflow-cpu")
        notes: dict[str, str] = {}
        versions = {"kfkit": version("kfkit") if _installed("kfkit") else "(source)", "MLflow": version("mlflow"),
                    "TensorFlow": tf_version, "Python": sys.version.split()[0]}
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        peers = {name: spec for name, spec in PEERS.items() if not wanted or any(w.lower() in name.lower()
                                                                                  for w in wanted)}
        pythons = {}
        for name, (venv_name, requirements, dist) in peers.items():
            python, found = install(venv_name, requirements + [f"tensorflow=={tf_version}"], dist)
            if python is None:
                notes[name] = f"not installed: {found}"
            else:
                pythons[name] = python
                versions[name] = found
        if "Seldon MLServer" in pythons:
            uvloop = subprocess.run([str(pythons["Seldon MLServer"]), "-c",
                                     "from importlib.metadata import version; print(version('uvloop'))"],
                                    capture_output=True, text=True).stdout.strip()
            versions["Seldon MLServer"] += f" (uvloop {uvloop})"

        print("training and registering the penguins model ...", flush=True)
        meta = prepare(scratch)
        # mlflow starts uvicorn by name: the environment's bin directory must be on PATH
        env = dict(os.environ, MLFLOW_TRACKING_URI=meta["tracking_uri"], KFKIT_LOCAL_ROOT=str(scratch),
                   PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        servers: dict[str, dict] = {}
        # server output goes to files: an unread pipe fills up and blocks a server that logs each request

        def log_file(name: str):
            return open(scratch / f"{name.split()[0].lower()}-{len(servers)}.log", "w")

        quiet: dict[str, dict] = {}
        # each server that keeps a request log writes its own files, as one server of an endpoint
        # does: two appending to one file would share its blocks and its rotation
        own_root = scratch / "no-access-log"
        shutil.copytree(scratch / "endpoints", own_root / "endpoints")
        for name, flags in ((KFKIT, ["--log-sample-rate", "1.0"]), (KFKIT_NO_LOG, ["--log-sample-rate", "0"]),
                            (KFKIT_NO_ACCESS, ["--log-sample-rate", "1.0", "--no-access-log",
                                               "--local-root", str(own_root)]),
                            (KFKIT_TWIN, ["--log-sample-rate", "0"])):
            port = free_port()
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "kfkit.cli", "serve", "--endpoint", "penguins", "--port", str(port), *flags],
                cwd=REPO, env=env, stdout=log_file(name), stderr=subprocess.STDOUT, start_new_session=True))
            (quiet if name in (KFKIT_NO_ACCESS, KFKIT_TWIN) else servers)[name] = {
                "port": port, "health": "/health", "predict": "/predict", "body": v1_body, "process": processes[-1]}
        for name, python in pythons.items():
            servers[name] = start_peer(name, python, scratch, meta["model_dir"], env, log_file(name))
            processes.append(servers[name]["process"])
        if not wanted or any(w.lower() in "mlflow models serve" for w in wanted):
            port = free_port()
            processes.append(subprocess.Popen(
                [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m",
                 f"models:/penguins/{meta['version']}", "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                cwd=scratch, env=env, stdout=log_file("mlflow"), stderr=subprocess.STDOUT, start_new_session=True))
            servers["mlflow models serve"] = {"port": port, "health": "/ping", "predict": "/invocations",
                                              "body": v1_body, "process": processes[-1]}
        for name, server in list(servers.items()):
            try:
                wait_healthy(server["port"], server["health"], server["process"], name)
                print(f"{name} is up on port {server['port']}", flush=True)
            except RuntimeError as exc:
                notes[name] = f"did not start: {exc}"
                del servers[name]
        if KFKIT not in servers:
            raise SystemExit(f"kfkit serve did not start; its log is in {scratch}")
        for name, server in quiet.items():
            wait_healthy(server["port"], "/health", server["process"], name)

        # the exchange alone answers each body with kfkit's own answer to it, so the bytes are the same
        answers = {}
        for batch in BATCHES:
            body = v1_body(batch)
            with socket.create_connection(("127.0.0.1", servers[KFKIT]["port"]), timeout=30) as sock:
                sock.sendall((f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                              f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
                answers[len(body)] = read_response(sock, bytearray())[1].decode()
        (scratch / "answers.json").write_text(json.dumps(answers))
        port = free_port()
        processes.append(subprocess.Popen(
            [sys.executable, str(PEERS_DIR / "exchange_server.py"), str(port), str(scratch / "answers.json")],
            cwd=REPO, env=env, stdout=log_file(EXCHANGE), stderr=subprocess.STDOUT, start_new_session=True))
        wait_healthy(port, "/health", processes[-1], EXCHANGE)
        exchange = {"port": port, "predict": "/predict", "body": v1_body}

        # the floor runs in its own process, with TensorFlow set up as kfkit serve sets it up
        floor = subprocess.Popen([sys.executable, str(PEERS_DIR / "floor.py"), meta["model_dir"]], cwd=REPO, env=env,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file(FLOOR), text=True,
                                 start_new_session=True)
        processes.append(floor)

        def in_process_floor(batch: int, seconds: float) -> dict:
            floor.stdin.write(f"{batch} {seconds}\n")
            floor.stdin.flush()
            answer = floor.stdout.readline()
            if not answer:
                raise SystemExit(f"the floor's process ended; its log is in {scratch}")
            return json.loads(answer)

        for batch in BATCHES:
            in_process_floor(batch, 0.3)  # the first calls trace the model
        runs: dict[tuple[str, int, int], list[dict]] = {}
        names = list(servers)
        for n in range(args.passes):
            order = names[n % len(names):] + names[:n % len(names)]
            print(f"pass {n + 1} of {args.passes} ...", flush=True)
            for batch in BATCHES:
                for concurrency in CONCURRENCY:
                    for name in order:
                        server = servers[name]
                        body = server["body"](batch)
                        # warm-up: the first calls trace the model, and each server settles at this load
                        load(server["port"], server["predict"], body, concurrency, 1.0 if n == 0 else 0.3)
                        measure = load_with_cpu if name in (KFKIT, KFKIT_NO_LOG) else (
                            lambda srv, b, c, t: load(srv["port"], srv["predict"], b, c, t))
                        runs.setdefault((name, batch, concurrency), []).append(
                            measure(server, body, concurrency, args.seconds))
                runs.setdefault((FLOOR, batch, 1), []).append(in_process_floor(batch, args.seconds))
                body = v1_body(batch)
                load(exchange["port"], exchange["predict"], body, 1, 0.3)
                runs.setdefault((EXCHANGE, batch, 1), []).append(load(exchange["port"], "/predict", body, 1, args.seconds))

        single = v1_body(1)
        kfkit_port = servers[KFKIT]["port"]
        # side by side: the same load without, with, and again without the idle connections
        before = load(kfkit_port, "/predict", single, 8, args.seconds)
        idle = merged([with_idle_connections(kfkit_port, "/predict", single, args.seconds)])
        after = load(kfkit_port, "/predict", single, 8, args.seconds)
        around = merged([before, after])

        # The targets' ratios, paired closely: a pass runs each configuration 1.5 s apart from its
        # counterpart, with minutes between passes, and this shared machine's speed drifts on that
        # scale. Here each round runs the counterparts PAIRED_S each, back to back, in a rotated
        # order, so a slow moment falls on both; a row's figure is the mean of its rounds' ratios.
        print("closely paired rounds ...", flush=True)
        alone: dict[int, list[tuple[float, float]]] = {}  # batch -> (kfkit / floor, kfkit / floor + exchange)
        for batch in BATCHES:
            body = v1_body(batch)
            for r in range(args.rounds):
                got = {}
                steps = [("floor", lambda: in_process_floor(batch, PAIRED_S)),
                         ("kfkit", lambda: load(kfkit_port, "/predict", body, 1, PAIRED_S)),
                         ("exchange", lambda: load(exchange["port"], "/predict", body, 1, PAIRED_S))]
                for key, step in steps[r % 3:] + steps[:r % 3]:
                    result = step()
                    got[key] = result["n"] / result["seconds"]
                limit = 1 / (1 / got["floor"] + 1 / got["exchange"])
                alone.setdefault(batch, []).append((got["kfkit"] / got["floor"], got["kfkit"] / limit))
        # row -> (CPU per request on/off, rps off/on): the request log; the access log; the second
        # process without the request log against the first (the control); the log against both
        logged: dict[tuple[int, int], list[tuple[float, float]]] = {}
        accessed: dict[tuple[int, int], list[tuple[float, float]]] = {}
        twins: dict[tuple[int, int], list[tuple[float, float]]] = {}
        logged_both: dict[tuple[int, int], list[tuple[float, float]]] = {}
        kfkits = {**servers, **quiet}
        for batch in BATCHES:
            for concurrency in CONCURRENCY:
                body = v1_body(batch)
                paired = [KFKIT, KFKIT_NO_LOG, KFKIT_NO_ACCESS, KFKIT_TWIN]
                for name in paired:  # each settles at this row's load
                    load(kfkits[name]["port"], "/predict", body, concurrency, 0.2)
                for r in range(args.rounds):
                    got = {}
                    for name in paired[r % len(paired):] + paired[:r % len(paired)]:
                        got[name] = load_with_cpu(kfkits[name], body, concurrency, PAIRED_S)
                    if not all(got[name]["n"] and got[name]["cpu"] > 0 for name in paired):
                        continue
                    cpu = {name: got[name]["cpu"] / got[name]["n"] for name in paired}
                    rps = {name: got[name]["n"] / got[name]["seconds"] for name in paired}
                    for on_name, off_name, into in ((KFKIT, KFKIT_NO_LOG, logged), (KFKIT, KFKIT_NO_ACCESS, accessed),
                                                    (KFKIT_TWIN, KFKIT_NO_LOG, twins)):
                        into.setdefault((batch, concurrency), []).append((
                            cpu[on_name] / cpu[off_name], rps[off_name] / rps[on_name]))
                    logged_both.setdefault((batch, concurrency), []).append((
                        cpu[KFKIT] / ((cpu[KFKIT_NO_LOG] + cpu[KFKIT_TWIN]) / 2),
                        (rps[KFKIT_NO_LOG] + rps[KFKIT_TWIN]) / 2 / rps[KFKIT]))

        results = {key: merged(value) for key, value in runs.items()}
        say(f"kfkit serve against the Python model servers: the penguins SavedModel, one worker each, "
            f"{args.passes} interleaved passes of {args.seconds:g} s per row")
        say("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
        say(f"\n{'server':<32}{'batch':>6}{'conc':>6}{'req/s':>9}{'inst/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'errors':>8}{'vs kfkit':>10}")
        everyone = [KFKIT, KFKIT_NO_LOG, *PEERS, "mlflow models serve"]
        for batch in BATCHES:
            for concurrency in CONCURRENCY:
                base = results[(KFKIT, batch, concurrency)]["rps"]
                for name in everyone:
                    if name in notes:
                        say(f"{name:<32}{batch:>6}{concurrency:>6}  {notes[name]}"[:200])
                        continue
                    r = results.get((name, batch, concurrency))
                    if r is None:
                        continue
                    say(f"{name:<32}{batch:>6}{concurrency:>6}{r['rps']:>9.0f}{r['rps'] * batch:>9.0f}"
                        f"{r['p50']:>9.1f}{r['p99']:>9.1f}{r['errors']:>8}{r['rps'] / base:>9.2f}x")
            for name in (FLOOR, EXCHANGE):
                r = results[(name, batch, 1)]
                say(f"{name:<32}{batch:>6}{1:>6}{r['rps']:>9.0f}{r['rps'] * batch:>9.0f}{r['p50']:>9.1f}"
                    f"{r['p99']:>9.1f}{r['errors']:>8}{r['rps'] / results[(KFKIT, batch, 1)]['rps']:>9.2f}x")
        say(f"{'kfkit serve + 1000 idle conns':<32}{1:>6}{8:>6}{idle['rps']:>9.0f}{idle['rps']:>9.0f}"
            f"{idle['p50']:>9.1f}{idle['p99']:>9.1f}{idle['errors']:>8}{idle['rps'] / around['rps']:>9.2f}x")
        say(f"{'kfkit serve, around that row':<32}{1:>6}{8:>6}{around['rps']:>9.0f}{around['rps']:>9.0f}"
            f"{around['p50']:>9.1f}{around['p99']:>9.1f}{around['errors']:>8}{1:>9.2f}x")

        say()
        behind = []
        for (name, batch, concurrency), r in results.items():
            if name in PEERS or name == "mlflow models serve":
                ratio = results[(KFKIT, batch, concurrency)]["rps"] / r["rps"] if r["rps"] else float("inf")
                if ratio <= 1.0:
                    behind.append(f"{name} at batch {batch}, concurrency {concurrency} ({ratio:.2f}x)")
        for name in PEERS:
            if name in servers:
                ratios = [results[(KFKIT, b, c)]["rps"] / results[(name, b, c)]["rps"]
                          for b in BATCHES for c in CONCURRENCY if results[(name, b, c)]["rps"]]
                say(f"kfkit / {name}: {min(ratios):.2f}x to {max(ratios):.2f}x over the 9 rows")
            else:
                say(f"kfkit / {name}: not measured ({notes.get(name, 'not selected')})")
        say("kfkit ahead of every peer on every row (target): "
            + ("yes" if not behind else "NO, behind " + "; ".join(behind)))
        costs = {(b, c): 1 - results[(KFKIT, b, c)]["rps"] / results[(KFKIT_NO_LOG, b, c)]["rps"]
                 for b in BATCHES for c in CONCURRENCY}
        for batch in BATCHES:
            say(f"request logging costs at batch {batch}: "
                + ", ".join(f"{costs[(batch, c)]:.1%} at concurrency {c}" for c in CONCURRENCY) + " (target <= 5%)")

        def cpu_per_request(name, batch, concurrency):
            found = runs[(name, batch, concurrency)]
            return sum(r["cpu"] for r in found) / max(sum(r["n"] for r in found), 1)

        say("the same cost as the server's CPU time per request (all passes; each thread's run time "
            "from /proc), which a busy machine disturbs far less than throughput:")
        for batch in BATCHES:
            parts = []
            for c in CONCURRENCY:
                on, off = cpu_per_request(KFKIT, batch, c), cpu_per_request(KFKIT_NO_LOG, batch, c)
                parts.append(f"{on * 1e6:.0f} vs {off * 1e6:.0f} us ({on / off - 1:+.1%}) at concurrency {c}")
            say(f"  batch {batch}: with vs without the request log: " + ", ".join(parts))
        # each pass ran both servers on every row back to back: a pass's ratio compares like with like
        ratios = np.array([(on["cpu"] / max(on["n"], 1)) / (off["cpu"] / max(off["n"], 1))
                           for b in BATCHES for c in CONCURRENCY
                           for on, off in zip(runs[(KFKIT, b, c)], runs[(KFKIT_NO_LOG, b, c)]) if off["cpu"] > 0])
        say(f"request logging's CPU cost per request, every row and pass together ({len(ratios)} paired runs): "
            + with_interval(ratios - 1, "+.1%", "; target <= 5%"))
        parts = []
        for batch in BATCHES:
            found = [r for c in CONCURRENCY for r in runs[(KFKIT, batch, c)]]
            writer, everything = sum(r["log_cpu"] for r in found), sum(r["cpu"] for r in found)
            parts.append(f"batch {batch}: {writer * 1e6 / max(sum(r['n'] for r in found), 1):.0f} us per request, "
                         f"{writer / max(everything, 1e-9):.1%} of the server's CPU")
        say(f"the request log's writer thread ({WRITER_THREAD}), measured on its own (all passes and "
            "concurrencies): " + "; ".join(parts))
        for batch in BATCHES:
            # one request at a time, the predict and the exchange happen one after the other
            limit = 1 / (1 / results[(FLOOR, batch, 1)]["rps"] + 1 / results[(EXCHANGE, batch, 1)]["rps"])
            say(f"kfkit one request at a time, batch {batch} / in-process predict: "
                f"{results[(KFKIT, batch, 1)]['rps'] / results[(FLOOR, batch, 1)]['rps']:.0%}"
                + (" (target >= 70%)" if batch == 1 else "")
                + f"; in-process predict + the exchange alone, one after the other: "
                  f"{limit / results[(FLOOR, batch, 1)]['rps']:.0%} of in-process, kfkit at "
                  f"{results[(KFKIT, batch, 1)]['rps'] / limit:.0%} of that")
        def mean_interval(values) -> str:
            return with_interval(values, ".0%")

        for batch in BATCHES:
            say(f"closely paired ({args.rounds} rounds of {PAIRED_S:g} s each, floor, kfkit and exchange back to "
                f"back): kfkit one request at a time, batch {batch} / in-process predict: "
                f"{mean_interval([a for a, _ in alone[batch]])}" + (" (target >= 70%)" if batch == 1 else "")
                + f"; of in-process predict + the exchange: {mean_interval([b for _, b in alone[batch]])}")

        def signed(ratios) -> str:
            return with_interval(np.array(ratios, dtype=float) - 1, "+.1%")

        for batch in BATCHES:
            say(f"closely paired ({args.rounds} rounds of {PAIRED_S:g} s each, kfkit with and without its request "
                f"log in each round): the request log's cost at batch {batch}, CPU per request: "
                + ", ".join(f"{signed([a for a, _ in logged[(batch, c)]])} at concurrency {c}" for c in CONCURRENCY))
        every = [pair for c in logged.values() for pair in c]
        say(f"closely paired, every row together ({len(every)} rounds): the request log's cost in CPU per request "
            f"{signed([a for a, _ in every])}, in throughput {signed([b for _, b in every])} (target <= 5%)")
        same = [pair for c in twins.values() for pair in c]
        say(f"closely paired, the control ({len(same)} rounds): two processes of the same server without the "
            f"request log differ in CPU per request by {signed([a for a, _ in same])}, in throughput by "
            f"{signed([b for _, b in same])} (the second against the first)")
        both = [pair for c in logged_both.values() for pair in c]
        say(f"closely paired, the request log's cost against both processes without it ({len(both)} rounds): "
            f"in CPU per request {signed([a for a, _ in both])}, in throughput {signed([b for _, b in both])} "
            "(target <= 5%)")
        for batch in BATCHES:
            say(f"closely paired ({args.rounds} rounds, kfkit serve and {KFKIT_NO_ACCESS} back to back): the access "
                f"log's cost at batch {batch} (a JSON line per request on stderr), CPU per request: "
                + ", ".join(f"{signed([a for a, _ in accessed[(batch, c)]])} at concurrency {c}" for c in CONCURRENCY)
                + "; throughput: "
                + ", ".join(f"{signed([b for _, b in accessed[(batch, c)]])} at concurrency {c}" for c in CONCURRENCY))
        say(f"kfkit 64 instances at concurrency 8 / in-process predict of 64: "
            f"{results[(KFKIT, 64, 8)]['rps'] / results[(FLOOR, 64, 1)]['rps']:.0%} (target >= 70%)")

        def per_call(batch, concurrency):
            found = runs[(KFKIT, batch, concurrency)]
            return sum(r["turn_requests"] for r in found) / max(sum(r["turns"] for r in found), 1)

        say("kfkit predicts the requests it reads in one turn of its event loop together, in one model call "
            "(requests per call, all passes): " + "; ".join(
                f"batch {b}: " + ", ".join(f"{per_call(b, c):.1f} at concurrency {c}" for c in CONCURRENCY)
                for b in BATCHES))
        say(f"with 1,000 idle connections: req/s {idle['rps'] / around['rps']:.0%}, p99 "
            f"{idle['p99'] / around['p99']:.0%} of the runs just before and after without them (target within 20%)")
        say("Vertex's Custom Prediction Routines server: not measured here (its local run needs a Docker "
            "image built by LocalModel.build_cpr_model)")
        if args.out:
            Path(args.out).write_text("\n".join(output) + "\n")
    finally:
        stop(processes)
        shutil.rmtree(scratch, ignore_errors=True)


def _installed(dist: str) -> bool:
    try:
        version(dist)
    except Exception:  # noqa: BLE001 - any metadata failure means: not installed as a distribution
        return False
    return True


if __name__ == "__main__":
    main()
