"""Kubeflow Training Operator TFJobs (kubeflow.org/v1) through the Kubernetes API.

A TFJob runs one chief and N workers as pods; the operator gives each its TF_CONFIG, so the train
step's code runs unchanged in every replica (MultiWorkerMirroredStrategy, the chief alone writing).
The step that submits the job waits for it with backoff, logs each change of the job's state and of
its replicas' counts, puts the failed pods' last log lines in its error, and deletes the job when it
is itself terminated (SIGTERM: a pipeline run cancelled, a pod evicted), so no orphan keeps the GPUs.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any, Callable

from kfkit.adapters.kserve import _reason, default_namespace
from kfkit.errors import ConfigError, KfkitError

log = logging.getLogger("kfkit.tfjob")
GROUP, VERSION, PLURAL, KIND = "kubeflow.org", "v1", "tfjobs", "TFJob"
API_VERSION = f"{GROUP}/{VERSION}"
# the operator sets TF_CONFIG and the ports on the container of this name only
CONTAINER = "tensorflow"
JOB_LABEL = "training.kubeflow.org/job-name"
REPLICA_LABEL = "training.kubeflow.org/replica-type"
STATES = ("Created", "Running", "Restarting", "Succeeded", "Failed")
RUN_TIMEOUT_S = 24 * 3600.0


class TFJobFailed(KfkitError):
    """The operator reports the job Failed: it is kept, with its pods, for their logs."""


def tf_job(name: str, namespace: str, image: str, command: list[str], *, workers: int = 1,
           resources: dict[str, Any] | None = None, worker_resources: dict[str, Any] | None = None,
           env: dict[str, str] | None = None, service_account: str = "", backoff_limit: int = 3,
           labels: dict[str, str] | None = None, volume_claim: str = "", mount_path: str = "") -> dict[str, Any]:
    """A TFJob of one chief and `workers` workers, each a pod running `command` in `image`.

    volume_claim: a PersistentVolumeClaim (ReadWriteMany) mounted at mount_path in every replica.

    restartPolicy OnFailure: a replica whose pod fails (a preempted node, an OOM) is started again
    and resumes from the train step's backups. Istio's sidecar is kept out of the pods: TensorFlow's
    gRPC between replicas does not pass through it (Kubeflow installs Istio in profile namespaces).
    """
    if workers < 0:
        raise ConfigError(f"workers must be >= 0, got {workers}")
    if not image or not command:
        raise ConfigError("a TFJob needs the trainer image and the command each replica runs")
    if bool(volume_claim) != bool(mount_path):
        raise ConfigError("volume_claim and mount_path go together: the claim is mounted at the path")

    def template(requests: dict[str, Any] | None) -> dict[str, Any]:
        container: dict[str, Any] = {"name": CONTAINER, "image": image, "command": list(command)}
        if env:
            container["env"] = [{"name": k, "value": str(v)} for k, v in env.items()]
        if requests:
            container["resources"] = requests
        spec: dict[str, Any] = {"containers": [container]}
        if volume_claim:
            container["volumeMounts"] = [{"name": "shared", "mountPath": mount_path}]
            spec["volumes"] = [{"name": "shared", "persistentVolumeClaim": {"claimName": volume_claim}}]
        if service_account:
            spec["serviceAccountName"] = service_account
        return {"metadata": {"annotations": {"sidecar.istio.io/inject": "false"}}, "spec": spec}

    replicas = {"Chief": {"replicas": 1, "restartPolicy": "OnFailure", "template": template(resources)}}
    if workers:
        replicas["Worker"] = {"replicas": workers, "restartPolicy": "OnFailure",
                              "template": template(worker_resources or resources)}
    return {"apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
            "spec": {"tfReplicaSpecs": replicas,
                     # pods stay after the end, so their logs can still be read
                     "runPolicy": {"cleanPodPolicy": "None", "backoffLimit": backoff_limit}}}


def job_state(job: dict[str, Any]) -> tuple[str, str]:
    """(state, message): the latest condition that holds, as the operator appends them."""
    current = ("Pending", "")
    for condition in job.get("status", {}).get("conditions", []) or []:
        if condition.get("type") in STATES and condition.get("status") == "True":
            current = (condition["type"], condition.get("message", ""))
    return current


def replica_counts(job: dict[str, Any]) -> str:
    """`Chief: 1 active; Worker: 1 active, 1 failed` from status.replicaStatuses."""
    parts = []
    for kind, counts in sorted((job.get("status", {}).get("replicaStatuses") or {}).items()):
        shown = [f"{counts[k]} {k}" for k in ("active", "succeeded", "failed") if counts.get(k)]
        parts.append(f"{kind}: {', '.join(shown) or 'none yet'}")
    return "; ".join(parts) or "no replicas yet"


class TFJobAdapter:
    """TFJobs in one namespace; `api` a kubernetes.client.CustomObjectsApi, `core` a CoreV1Api (logs)."""

    def __init__(self, namespace: str = "", api=None, core=None, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.namespace = default_namespace(namespace)
        if api is None or core is None:
            from kfkit.adapters.kserve import _custom_objects_api
            api = api if api is not None else _custom_objects_api()
            if core is None:
                from kubernetes import client
                core = client.CoreV1Api()
        self.api, self.core, self.sleep, self.clock = api, core, sleep, clock

    def _call(self, method: str, *args, **kwargs):
        return getattr(self.api, method)(GROUP, VERSION, self.namespace, PLURAL, *args, **kwargs)

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create the TFJob; one already there under this name (a retried step) is followed instead."""
        from kubernetes.client.exceptions import ApiException

        name = body["metadata"]["name"]
        try:
            created = self._call("create_namespaced_custom_object", body)
        except ApiException as exc:
            if exc.status != 409:
                raise KfkitError(f"creating TFJob {self.namespace}/{name} failed: {_reason(exc)}") from exc
            log.info("TFJob %s/%s exists already (a retried step): following it", self.namespace, name)
            return self.get(name)
        log.info("created TFJob %s/%s", self.namespace, name)
        return created

    def get(self, name: str) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._call("get_namespaced_custom_object", name)
        except ApiException as exc:
            raise KfkitError(f"reading TFJob {self.namespace}/{name} failed: {_reason(exc)}") from exc

    def cancel(self, name: str) -> None:
        """Delete the job and, in the foreground, its pods; one already gone is not an error."""
        from kubernetes.client.exceptions import ApiException

        try:
            self._call("delete_namespaced_custom_object", name, propagation_policy="Foreground")
            log.info("deleted TFJob %s/%s", self.namespace, name)
        except ApiException as exc:
            if exc.status != 404:
                raise KfkitError(f"deleting TFJob {self.namespace}/{name} failed: {_reason(exc)}") from exc

    def logs(self, name: str, tail_lines: int = 40, failed_only: bool = False) -> dict[str, str]:
        """Pod name -> its last log lines, for the job's replicas (the failed ones only, if asked)."""
        from kubernetes.client.exceptions import ApiException

        pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"{JOB_LABEL}={name}")
        found = {}
        for pod in pods.items:
            if failed_only and pod.status.phase != "Failed":
                continue
            try:
                found[pod.metadata.name] = self.core.read_namespaced_pod_log(
                    pod.metadata.name, self.namespace, container=CONTAINER, tail_lines=tail_lines)
            except ApiException as exc:
                found[pod.metadata.name] = f"(no log: {_reason(exc)})"
        return found

    def wait(self, name: str, timeout_s: float = RUN_TIMEOUT_S) -> dict[str, Any]:
        """Poll until the job succeeds (backoff 1 s to 30 s); a failure's error carries the failed pods' logs."""
        deadline, delay, last = self.clock() + timeout_s, 1.0, None
        while True:
            job = self.get(name)
            state, message = job_state(job)
            seen = (state, replica_counts(job))
            if seen != last:
                log.info("TFJob %s/%s: %s (%s)%s", self.namespace, name, state, seen[1],
                         f": {message}" if message else "")
                last, delay = seen, 1.0  # something moved: look again soon
            if state == "Succeeded":
                return job
            if state == "Failed":
                tails = "".join(f"\n--- {pod} ---\n{text.rstrip()}"
                                for pod, text in sorted(self.logs(name, failed_only=True).items()))
                raise TFJobFailed(f"TFJob {self.namespace}/{name} failed: {message or 'no message'} "
                                 f"({seen[1]}){tails}")
            if self.clock() >= deadline:
                raise KfkitError(f"TFJob {self.namespace}/{name} still {state} after {timeout_s:.0f}s ({seen[1]})")
            self.sleep(delay)
            delay = min(delay * 2, 30.0)

    def run(self, body: dict[str, Any], timeout_s: float = RUN_TIMEOUT_S) -> dict[str, Any]:
        """Submit, wait, and delete the job if this process is terminated (SIGTERM) or times out meanwhile."""
        name = body["metadata"]["name"]
        self.submit(body)
        previous = None

        def terminated(signum, frame):
            raise KfkitError(f"terminated (signal {signum}) while TFJob {self.namespace}/{name} ran: deleted it")

        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, terminated)
        try:
            return self.wait(name, timeout_s)
        except TFJobFailed:
            raise
        except BaseException:  # terminated, timed out, interrupted: no job may outlive its step
            try:
                self.cancel(name)
            except KfkitError as exc:
                log.error("could not delete TFJob %s/%s: %s", self.namespace, name, exc)
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
