"""A real Prometheus (Debian's package) holding Knative queue-proxy metrics written here.

The samples are backfilled with promtool (`tsdb create-blocks-from openmetrics`), so the server
answers PromQL over known data at once: no scraping, no waiting. CI installs the package
(.ci/run); elsewhere the tests that need it skip saying so.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

NAMESPACE = "kubeflow-user-example-com"
BUCKETS_MS = (50, 100, 250, 500, 1000)


def require() -> None:
    if shutil.which("prometheus") and shutil.which("promtool"):
        return
    if os.environ.get("CI"):
        pytest.fail("prometheus and promtool are missing: .ci/run installs Debian's prometheus package")
    pytest.skip("prometheus is not installed (apt-get install prometheus)")


class Series:
    """Knative's two queue-proxy series for one revision: samples every `step` seconds."""

    def __init__(self):
        self.lines: dict[str, list[str]] = {"revision_request_count": [], "revision_request_latencies": []}

    def revision(self, revision: str, start: float, end: float, step: float, *, ok_per_s: float,
                 errors_per_s: float = 0.0, client_errors_per_s: float = 0.0, latency_bucket_ms: int = 100) -> None:
        """Counters from 0 at `start`: ok_per_s 2xx, errors_per_s 5xx and client_errors_per_s 4xx (a series
        only when not 0) requests a second, every response time in the bucket whose upper bound is
        latency_bucket_ms."""
        classes = [("200", "2xx", ok_per_s), ("500", "5xx", errors_per_s)]
        if client_errors_per_s:
            classes.insert(1, ("400", "4xx", client_errors_per_s))
        t, n = start, 0
        while t <= end + 1e-9:
            for code, code_class, rate in classes:
                labels = (f'namespace_name="{NAMESPACE}",revision_name="{revision}",response_code="{code}",'
                          f'response_code_class="{code_class}"')
                count = rate * (t - start)
                self.lines["revision_request_count"].append(f"revision_request_count{{{labels}}} {count} {t:.0f}")
                for bound in (*BUCKETS_MS, "+Inf"):
                    in_bucket = count if bound == "+Inf" or bound >= latency_bucket_ms else 0
                    self.lines["revision_request_latencies"].append(
                        f'revision_request_latencies_bucket{{{labels},le="{bound}"}} {in_bucket} {t:.0f}')
                self.lines["revision_request_latencies"].append(
                    f"revision_request_latencies_count{{{labels}}} {count} {t:.0f}")
            t += step
            n += 1

    def openmetrics(self) -> str:
        text = ["# TYPE revision_request_count counter", *self.lines["revision_request_count"],
                "# TYPE revision_request_latencies histogram", *self.lines["revision_request_latencies"], "# EOF"]
        return "\n".join(text) + "\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(series: Series, workdir: Path):
    """(the server's URL, its process): Prometheus serving these samples."""
    require()
    (workdir / "metrics.om").write_text(series.openmetrics())
    data = workdir / "data"
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(workdir / "metrics.om"), str(data)],
                   check=True, capture_output=True)
    (workdir / "prometheus.yml").write_text("global:\n  scrape_interval: 15s\n")
    port = _free_port()
    process = subprocess.Popen(["prometheus", f"--config.file={workdir / 'prometheus.yml'}",
                                f"--storage.tsdb.path={data}", "--storage.tsdb.retention.time=100y",
                                f"--web.listen-address=127.0.0.1:{port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in process.stderr:  # Prometheus says when it is ready; EOF if it died
        seen.append(line)
        if "Server is ready to receive web requests" in line:
            # keep draining its log so it never blocks on a full pipe
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
            return f"http://127.0.0.1:{port}", process
    process.wait()
    raise RuntimeError("prometheus did not start:\n" + "".join(seen[-20:]))
