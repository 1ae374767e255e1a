"""Soak: valid traffic's latency and the server's memory while hostile clients hold on, one run.

    python benchmarks/soak.py [--seconds 10] [--slow 300]

For `kfkit serve` (the penguins model) and `kfkit log-sink`, each started as its own process on
127.0.0.1, measures valid traffic (8 keep-alive clients in a closed loop: predictions, or a
request and response event pair) first alone, then while attackers run beside it:
- `--slow` connections trickling headers (slowloris) and as many trickling a body a byte a second,
  each reopened as soon as the server cuts it off;
- header bombs: a 64 MB header line in 1 MB writes, five a second (an unpaced loop measures only
  the attacker's own CPU on this 2-core machine).
Prints requests/s, p50 and p99 for both passes, the p99 ratio, how many slow connections the server
cut off, and the server's peak RSS against its bound.
Targets: p99 under attack within 2x of the quiet p99 (and requests/s at least half); peak RSS at
most the quiet RSS + 128 MB, whatever the attackers send.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
import serve as serve_bench  # noqa: E402  (prepare, free_port, wait_healthy, PENGUIN)

RSS_SLACK = 128 * 1024 * 1024
EVENT_ANNOTATIONS = json.dumps({"kfkit.io/model": "penguins", "kfkit.io/model-version": "1"})


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Attack:
    """Slow headers, slow bodies and header bombs against one port until stopped."""

    def __init__(self, port: int, slow: int, body_path: str):
        self.port, self.slow, self.body_path = port, slow, body_path
        self.stop = threading.Event()
        self.cut_off = 0
        self.bombs = 0

    def _open(self, kind: str):
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        except OSError:
            return None
        sock.setblocking(False)
        head = b"POST /predict HTTP/1.1\r\nHost: x\r\n" if kind == "headers" else \
            (f"POST {self.body_path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             "Content-Length: 100000\r\n\r\n").encode()
        try:
            sock.send(head)
        except OSError:
            sock.close()
            return None
        return sock

    def _trickle(self) -> None:
        conns = [(kind, self._open(kind)) for kind in ("headers", "body") for _ in range(self.slow)]
        while not self.stop.is_set():
            live = [sock for _, sock in conns if sock is not None]
            # readable: the server answered (408, 431) or closed it, i.e. cut this one off
            answered = set(select.select(live, [], [], 0)[0]) if live else set()
            for i, (kind, sock) in enumerate(conns):
                if sock is not None and sock not in answered:
                    try:
                        sock.send(b"X-a: b\r\n" if kind == "headers" else b"{")
                        continue
                    except BlockingIOError:
                        continue
                    except OSError:
                        pass
                if sock is not None:
                    sock.close()
                    self.cut_off += 1
                conns[i] = (kind, self._open(kind))
            self.stop.wait(1.0)
        for _, sock in conns:
            if sock is not None:
                sock.close()

    def _bomb(self) -> None:
        chunk = b"a" * (1 << 20)
        while not self.stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Bomb: ")
                    for _ in range(64):
                        if self.stop.is_set():
                            break
                        sock.sendall(chunk)
            except OSError:
                pass
            self.bombs += 1
            self.stop.wait(0.2)  # five a second: the attacker's loop would otherwise take the machine's CPU

    def __enter__(self):
        self.threads = [threading.Thread(target=self._trickle, daemon=True),
                        threading.Thread(target=self._bomb, daemon=True)]
        for thread in self.threads:
            thread.start()
        time.sleep(2.0)  # the slow connections are open before valid traffic is measured
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(15)


def drive(port: int, send, seconds: float, pid: int, concurrency: int = 8) -> dict:
    """Closed-loop valid traffic; latencies in ms, the server's peak RSS."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    deadline = time.monotonic() + seconds
    peak = [rss(pid)]

    def worker(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        n = 0
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                ok = send(conn, k, n)
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                ok = False
            n += 1
            if ok:
                latencies[k].append((time.perf_counter() - started) * 1000)
            else:
                errors[k] += 1
        conn.close()

    def sample() -> None:
        while time.monotonic() < deadline:
            peak[0] = max(peak[0], rss(pid))
            time.sleep(0.2)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(concurrency)]
    threads.append(threading.Thread(target=sample))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    flat = np.array([x for per in latencies for x in per])
    return {"rps": len(flat) / seconds, "p50": float(np.percentile(flat, 50)) if len(flat) else float("nan"),
            "p99": float(np.percentile(flat, 99)) if len(flat) else float("nan"), "errors": sum(errors),
            "rss": peak[0]}


def predict_sender(conn, k, n) -> bool:
    conn.request("POST", "/predict", body=json.dumps({"instances": [serve_bench.PENGUIN]}),
                 headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    return response.status == 200


def event_sender(conn, k, n) -> bool:
    event_id = f"soak-{k}-{n}-{time.monotonic_ns()}"
    for kind, body in (("request", {"instances": [serve_bench.PENGUIN]}), ("response", {"predictions": ["Gentoo"]})):
        conn.request("POST", "/", body=json.dumps(body), headers={
            "ce-specversion": "1.0", "ce-id": event_id, "ce-type": f"org.kubeflow.serving.inference.{kind}",
            "ce-inferenceservicename": "penguins", "ce-annotations": EVENT_ANNOTATIONS,
            "content-type": "application/json"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            return False
    return True


def soak(name: str, command: list[str], health: str, sender, seconds: float, slow: int, env: dict,
         body_path: str) -> list[str]:
    port = serve_bench.free_port()
    log = open(Path(tempfile.gettempdir()) / f"kfkit-soak-{name}.log", "w")
    process = subprocess.Popen([*command, "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        serve_bench.wait_healthy(port, health, process)
        quiet = drive(port, sender, seconds, process.pid)
        with Attack(port, slow, body_path) as attack:
            loud = drive(port, sender, seconds, process.pid)
        cut, bombs = attack.cut_off, attack.bombs
    finally:
        process.terminate()
        process.wait(30)
        log.close()
    p99_ratio = loud["p99"] / quiet["p99"]
    rps_ratio = loud["rps"] / quiet["rps"]
    bound = quiet["rss"] + RSS_SLACK
    return [f"{name:<10} quiet        {quiet['rps']:8.0f} req/s  p50 {quiet['p50']:6.2f} ms  p99 {quiet['p99']:7.2f} ms  "
            f"errors {quiet['errors']:4d}  peak RSS {quiet['rss'] / 2**20:6.0f} MB",
            f"{name:<10} under attack {loud['rps']:8.0f} req/s  p50 {loud['p50']:6.2f} ms  p99 {loud['p99']:7.2f} ms  "
            f"errors {loud['errors']:4d}  peak RSS {loud['rss'] / 2**20:6.0f} MB",
            f"{name:<10} p99 x{p99_ratio:.2f} (target <= 2), req/s x{rps_ratio:.2f} (target >= 0.5), peak RSS "
            f"{loud['rss'] / 2**20:.0f} MB vs bound {bound / 2**20:.0f} MB ({'within' if loud['rss'] <= bound else 'OVER'}); "
            f"{cut} slow connections cut off, {bombs} header bombs sent"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--slow", type=int, default=300, help="slow-header connections (and as many slow bodies)")
    args = parser.parse_args()
    kfkit = str(Path(sys.executable).parent / "kfkit")
    with tempfile.TemporaryDirectory(prefix="kfkit-soak-") as tmp:
        root = Path(tmp)
        serve_bench.prepare(root)
        env = {**os.environ, "KFKIT_LOCAL_ROOT": str(root)}
        lines = [f"soak: {args.seconds:g} s per pass, {args.slow} slow-header + {args.slow} slow-body connections, "
                 "header bombs of 64 MB; 8 valid clients"]
        lines += soak("serve", [kfkit, "serve", "--endpoint", "penguins", "--local-root", str(root)], "/health",
                      predict_sender, args.seconds, args.slow, env, "/predict")
        lines += soak("log-sink", [kfkit, "log-sink", "--local-root", str(root), "--inference-service", "penguins",
                                   "--max-connections-per-client", "0"], "/health", event_sender, args.seconds,
                      args.slow, env, "/")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
