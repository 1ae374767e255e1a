"""Long-running Google Cloud jobs the way Google's own pipeline components run them.

A step that starts a BigQuery job, a Vertex AI operation or a batch prediction job:
- writes the `gcp_resources` output parameter as soon as the job exists, in GCPC's format (the
  JSON of google_cloud_pipeline_components.proto.gcp_resources_pb2.GcpResources, one entry per job,
  resourceType BigQueryJob / VertexLro / BatchPredictionJob), which is what Vertex AI Pipelines
  reads to show and cancel the step's jobs;
- polls the job with exponential backoff instead of blocking in the SDK;
- cancels every job still running when the pipeline run is cancelled: KFP sends the step SIGTERM,
  and, as GCPC's ExecutionContext does (container/utils/execution_context.py), the handler cancels
  the jobs and ends the process with status 0 so nothing downstream reads a cancelled job's output.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable

log = logging.getLogger("kfkit.cloud_jobs")

FIRST_POLL_S = 1.0
POLL_FACTOR = 2.0
MAX_POLL_S = 30.0


def bigquery_job_uri(project: str, job_id: str, location: str) -> str:
    """The selfLink BigQuery returns for a job, which GCPC writes as the BigQueryJob's URI."""
    return f"https://www.googleapis.com/bigquery/v2/projects/{project}/jobs/{job_id}?location={location}"


def vertex_uri(location: str, resource_name: str) -> str:
    """GCPC's URI of a Vertex AI resource or operation: the regional endpoint plus its full name."""
    return f"https://{location}-aiplatform.googleapis.com/v1/{resource_name}"


def poll_intervals(first: float = FIRST_POLL_S, factor: float = POLL_FACTOR, most: float = MAX_POLL_S):
    interval = first
    while True:
        yield interval
        interval = min(interval * factor, most)


class CloudJobs:
    """The jobs one step starts: its gcp_resources file, their polling, their cancellation on SIGTERM."""

    def __init__(self, gcp_resources: str | None = None, sleep: Callable[[float], None] = time.sleep,
                 exit: Callable[[int], None] = os._exit):
        self.path = Path(gcp_resources) if gcp_resources else None
        self.resources: list[dict[str, str]] = []
        self._running: dict[str, Callable[[], object]] = {}
        self._sleep = sleep
        self._exit = exit
        self._previous_handler = None
        self._lock = threading.Lock()
        if self.path is not None:
            self._write()

    # ---- gcp_resources -----------------------------------------------------------------------------
    def _write(self) -> None:
        from kfkit.atomic import atomic_file
        with atomic_file(self.path) as handle:
            json.dump({"resources": self.resources} if self.resources else {}, handle, indent=1)

    def started(self, resource_type: str, uri: str, cancel: Callable[[], object] | None = None) -> None:
        """Record a job that now exists (written at once) and how to cancel it while it runs."""
        with self._lock:
            self.resources.append({"resourceType": resource_type, "resourceUri": uri})
            if cancel is not None:
                self._running[uri] = cancel
            if self.path is not None:
                self._write()
        log.info("started %s %s", resource_type, uri)

    def finished(self, uri: str) -> None:
        with self._lock:
            self._running.pop(uri, None)

    def wait(self, done: Callable[[], bool], what: str) -> None:
        """Poll done() with exponential backoff (1 s doubling to 30 s) until it says the job ended."""
        started = time.monotonic()
        for interval in poll_intervals():
            if done():
                return
            log.info("%s still running after %.0fs; next check in %.0fs", what, time.monotonic() - started, interval)
            self._sleep(interval)

    def pause(self, seconds: float) -> None:
        """Wait between two attempts of a job (the same clock as the polling)."""
        self._sleep(seconds)

    def run(self, resource_type: str, uri: str, done: Callable[[], bool], cancel: Callable[[], object] | None,
            what: str) -> None:
        """started() + wait() + finished(): one job from creation to its end."""
        self.started(resource_type, uri, cancel)
        try:
            self.wait(done, what)
        finally:
            self.finished(uri)

    # ---- cancellation ------------------------------------------------------------------------------
    def __enter__(self) -> "CloudJobs":
        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def cancel_on_sigterm(self) -> "CloudJobs":
        """Cancel the running jobs on SIGTERM for the rest of the process (a step's whole life)."""
        return self.__enter__()

    def __exit__(self, *_exc) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGTERM, self._previous_handler)
            self._previous_handler = None

    def cancel_running(self) -> list[str]:
        """Ask Google Cloud to cancel every job still running; returns their URIs."""
        with self._lock:
            running = list(self._running.items())
        for uri, cancel in running:
            try:
                cancel()
                log.warning("cancelled %s", uri)
            except Exception as exc:  # noqa: BLE001 - one failed cancel must not stop the others
                log.error("could not cancel %s: %s", uri, exc)
        return [uri for uri, _ in running]

    def _on_sigterm(self, *_args) -> None:
        log.warning("SIGTERM received: the pipeline run is being cancelled")
        self.cancel_running()
        logging.shutdown()
        self._exit(0)
