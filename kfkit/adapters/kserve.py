"""KServe InferenceServices through the Kubernetes API: the only module that calls the Kubernetes client.

An endpoint is one InferenceService (serving.kserve.io/v1beta1) whose predictor is KServe's
TensorFlow model format on a SavedModel laid out for TF Serving (`<storageUri>/1/saved_model.pb`).
kfkit's canary maps to KServe's own: updating the predictor with `canaryTrafficPercent: N` gives
the new revision N% and the last rolled-out one the rest; promoting removes the field (the latest
revision takes 100%); rolling back sets it to 0 (the previous rolled-out revision takes 100%).
Canaries need KServe's Serverless (Knative) mode, as KServe documents.

With an explainer image, the service also gets `spec.explainer`: KServe's custom explainer, one
container running `kfkit serve` on the same staged version (STORAGE_URI, which KServe's storage
initializer copies to /mnt/models for a custom container), so POST /v1/models/<name>:explain answers
sampled Shapley attributions. KServe appends `--model_name <service> --predictor_host ... --http_port
8080` to a custom explainer's args (explainer_custom.go), which `kfkit serve` takes. The explainer
follows the predictor: the same version, the same canaryTrafficPercent, promoted and rolled back with it.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any, Callable

from kfkit.errors import ConfigError, KfkitError

log = logging.getLogger("kfkit.kserve")
GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
API_VERSION = f"{GROUP}/{VERSION}"
MODEL_LABEL, VERSION_LABEL = "kfkit.io/model", "kfkit.io/model-version"
# annotations deploy writes on the InferenceService: the version the canary replaces and when it came
PREVIOUS_VERSION, DEPLOYED_AT = "kfkit.io/previous-model-version", "kfkit.io/deployed-at"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
READY_TIMEOUT_S = 600.0


def default_namespace(namespace: str = "", namespace_file: Path = SERVICE_ACCOUNT_NAMESPACE) -> str:
    """The namespace given, else the pod's own (a Kubeflow profile's namespace), else `default`."""
    if namespace:
        return namespace
    if namespace_file.exists():
        return namespace_file.read_text().strip() or "default"
    return "default"


EXPLAINER_MOUNT = "/mnt/models"  # KServe's DefaultModelLocalMountPath


def explainer_spec(storage_uri: str, image: str, *, labels: dict[str, str], service_account: str = "",
                   min_replicas: int = 1, max_replicas: int = 1) -> dict[str, Any]:
    """KServe's custom explainer running `kfkit serve` on the staged version (`<storageUri>/1/`, model_storage)."""
    spec: dict[str, Any] = {
        "minReplicas": min_replicas, "maxReplicas": max_replicas, "labels": labels,
        "containers": [{"name": "kserve-container", "image": image, "command": ["kfkit"],
                        "args": ["serve", "--model-dir", f"{EXPLAINER_MOUNT}/1", "--host", "0.0.0.0"],
                        "env": [{"name": "STORAGE_URI", "value": storage_uri}]}],
    }
    if service_account:
        spec["serviceAccountName"] = service_account  # the storage initializer's credentials, as the predictor's
    return spec


def inference_service(name: str, namespace: str, storage_uri: str, *, model_name: str, model_version: str,
                      canary_traffic_percent: int | None = None, service_account: str = "", min_replicas: int = 1,
                      max_replicas: int = 1, request_logger_url: str = "", explainer_image: str = "") -> dict[str, Any]:
    """The InferenceService serving one SavedModel with KServe's TensorFlow runtime.

    With request_logger_url, KServe's inference logger posts every request and response there (a
    kfkit log-sink), each event carrying the model and version annotations of the pod that answered.
    """
    labels = {MODEL_LABEL: model_name, VERSION_LABEL: str(model_version)}
    predictor: dict[str, Any] = {
        "minReplicas": min_replicas,
        "maxReplicas": max_replicas,
        "labels": labels,  # on the revision's pods: which registered version a revision serves
        "model": {"modelFormat": {"name": "tensorflow"}, "storageUri": storage_uri},
    }
    if service_account:
        predictor["serviceAccountName"] = service_account  # the storage initializer's credentials
    if canary_traffic_percent is not None:
        predictor["canaryTrafficPercent"] = canary_traffic_percent
    if request_logger_url:
        if not request_logger_url.startswith(("http://", "https://")):
            raise ConfigError(f"request_logger_url must be the http(s):// address of a kfkit log-sink, "
                              f"got {request_logger_url!r}")
        predictor["annotations"] = dict(labels)  # on the revision's pods, where the logger reads them
        predictor["logger"] = {"mode": "all", "url": request_logger_url,
                               "metadataAnnotations": [MODEL_LABEL, VERSION_LABEL]}
    spec: dict[str, Any] = {"predictor": predictor}
    if explainer_image:
        spec["explainer"] = explainer_spec(storage_uri, explainer_image, labels=labels, service_account=service_account,
                                           min_replicas=min_replicas, max_replicas=max_replicas)
        if canary_traffic_percent is not None:
            spec["explainer"]["canaryTrafficPercent"] = canary_traffic_percent
    return {"apiVersion": API_VERSION, "kind": "InferenceService",
            "metadata": {"name": name, "namespace": namespace, "labels": {MODEL_LABEL: model_name}},
            "spec": spec}


def annotation(service: dict[str, Any], key: str) -> str:
    return (service.get("metadata", {}).get("annotations") or {}).get(key, "")


def served_version(service: dict[str, Any]) -> str | None:
    return service.get("spec", {}).get("predictor", {}).get("labels", {}).get(VERSION_LABEL)


def describe(service: dict[str, Any]) -> str:
    """One line: the service, the version its latest revision serves and that revision's share."""
    canary = service["spec"]["predictor"].get("canaryTrafficPercent")
    share = "100% (no canary)" if canary is None else f"{canary}% (the previous rolled-out revision: {100 - canary}%)"
    return (f"InferenceService {service['metadata'].get('namespace', '')}/{service['metadata']['name']}: "
            f"latest revision (version {served_version(service) or '?'}) {share}")


def ready_condition(service: dict[str, Any]) -> dict[str, Any] | None:
    for condition in service.get("status", {}).get("conditions", []) or []:
        if condition.get("type") == "Ready":
            return condition
    return None


def traffic(service: dict[str, Any]) -> dict[str, int]:
    """Revision name -> percent, as KServe reports it in status.components.predictor.traffic."""
    entries = service.get("status", {}).get("components", {}).get("predictor", {}).get("traffic", []) or []
    return {e.get("revisionName", e.get("tag", "?")): int(e.get("percent", 0)) for e in entries}


class KServeAdapter:
    """InferenceServices in one namespace; `api` is a kubernetes.client.CustomObjectsApi."""

    def __init__(self, namespace: str = "", api=None, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.namespace = default_namespace(namespace)
        self.api = api if api is not None else _custom_objects_api()
        self.sleep, self.clock = sleep, clock

    def _call(self, method: str, *args, **kwargs):
        return getattr(self.api, method)(GROUP, VERSION, self.namespace, PLURAL, *args, **kwargs)

    def get(self, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._call("get_namespaced_custom_object", name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise KfkitError(f"reading InferenceService {self.namespace}/{name} failed: {_reason(exc)}") from exc

    def _replace(self, current: dict[str, Any], predictor: dict[str, Any],
                 annotations: dict[str, str] | None = None, explainer: Any = "keep") -> dict[str, Any]:
        """Replace the object with this predictor (and explainer: a spec, None to remove it, "keep" as it is);
        its resourceVersion makes a concurrent change fail, not vanish."""
        from kubernetes.client.exceptions import ApiException

        body = copy.deepcopy(current)
        body.pop("status", None)
        body["spec"]["predictor"] = predictor
        if explainer is None:
            body["spec"].pop("explainer", None)
        elif explainer != "keep":
            body["spec"]["explainer"] = explainer
        if annotations:
            body["metadata"]["annotations"] = {**(body["metadata"].get("annotations") or {}), **annotations}
        name = body["metadata"]["name"]
        try:
            return self._call("replace_namespaced_custom_object", name, body)
        except ApiException as exc:
            raise KfkitError(f"updating InferenceService {self.namespace}/{name} failed: {_reason(exc)}") from exc

    def deploy(self, name: str, storage_uri: str, *, model_name: str, model_version: str, traffic_percent: int = 100,
               service_account: str = "", min_replicas: int = 1, max_replicas: int = 1,
               request_logger_url: str = "", explainer_image: str = "") -> dict[str, Any]:
        """Create the InferenceService, or move it to this model with `traffic_percent` as KServe's canary.

        Returns {"service", "previous_version", "created", "changed"}; deploying the version already
        served changes nothing (a retried step).
        """
        from kubernetes.client.exceptions import ApiException

        if not 0 <= traffic_percent <= 100:
            raise ConfigError(f"traffic_percent must be between 0 and 100, got {traffic_percent}")
        current = self.get(name)
        wanted = inference_service(name, self.namespace, storage_uri, model_name=model_name,
                                   model_version=model_version, service_account=service_account,
                                   min_replicas=min_replicas, max_replicas=max_replicas,
                                   request_logger_url=request_logger_url, explainer_image=explainer_image)
        if current is None:  # the first revision takes all traffic: there is nothing to split with
            try:
                created = self._call("create_namespaced_custom_object", wanted)
            except ApiException as exc:
                raise KfkitError(f"creating InferenceService {self.namespace}/{name} failed: {_reason(exc)}") from exc
            return {"service": created, "previous_version": None, "created": True, "changed": True}
        previous = served_version(current)
        current_explainer = current["spec"].get("explainer")
        ours = _is_kfkit_explainer(current_explainer)
        explainer_as_wanted = bool(explainer_image) == ours or (current_explainer is not None and not ours)
        if (current["spec"]["predictor"].get("model", {}).get("storageUri") == storage_uri
                and explainer_as_wanted):
            log.info("InferenceService %s/%s already serves %s; nothing to change", self.namespace, name, storage_uri)
            return {"service": current, "previous_version": None, "created": False, "changed": False}
        predictor = copy.deepcopy(wanted["spec"]["predictor"])
        if traffic_percent < 100:
            predictor["canaryTrafficPercent"] = traffic_percent
        explainer: Any = "keep"  # an explainer kfkit did not write is left as it is
        if explainer_image:
            explainer = copy.deepcopy(wanted["spec"]["explainer"])
            if traffic_percent < 100:
                explainer["canaryTrafficPercent"] = traffic_percent
        elif ours:
            explainer = None  # kfkit's explainer of an earlier version, no longer asked for
        notes = {PREVIOUS_VERSION: str(previous or ""), DEPLOYED_AT: f"{time.time():.3f}"}
        updated = self._replace(current, predictor, notes, explainer)
        return {"service": updated, "previous_version": previous, "created": False, "changed": True}

    def promote(self, name: str) -> dict[str, Any]:
        """KServe's promotion: without canaryTrafficPercent the latest revision takes all traffic."""
        current = self._existing(name)
        predictor = copy.deepcopy(current["spec"]["predictor"])
        if "canaryTrafficPercent" not in predictor:
            raise ConfigError(f"InferenceService {self.namespace}/{name} has no canary to promote: its latest "
                              "revision already takes all traffic")
        del predictor["canaryTrafficPercent"]
        explainer = copy.deepcopy(current["spec"].get("explainer"))
        if _is_kfkit_explainer(explainer):
            explainer.pop("canaryTrafficPercent", None)  # kfkit's explainer follows its predictor
        return self._replace(current, predictor, explainer=explainer if _is_kfkit_explainer(explainer) else "keep")

    def rollback(self, name: str) -> dict[str, Any]:
        """KServe's rollback: canaryTrafficPercent 0 sends all traffic to the previous rolled-out revision."""
        current = self._existing(name)
        predictor = copy.deepcopy(current["spec"]["predictor"])
        status = current.get("status", {}).get("components", {}).get("predictor", {})
        if not (status.get("previousRolledoutRevision") or "canaryTrafficPercent" in predictor):
            raise ConfigError(f"InferenceService {self.namespace}/{name} has no previous revision to roll back to")
        if predictor.get("canaryTrafficPercent") == 0:
            raise ConfigError(f"InferenceService {self.namespace}/{name} is already rolled back "
                              "(canaryTrafficPercent is 0)")
        predictor["canaryTrafficPercent"] = 0
        explainer = copy.deepcopy(current["spec"].get("explainer"))
        if _is_kfkit_explainer(explainer):
            explainer["canaryTrafficPercent"] = 0  # explanations come from the version rolled back to
        return self._replace(current, predictor, explainer=explainer if _is_kfkit_explainer(explainer) else "keep")

    def _existing(self, name: str) -> dict[str, Any]:
        current = self.get(name)
        if current is None:
            raise ConfigError(f"no InferenceService {name!r} in namespace {self.namespace!r}")
        return current

    def wait_ready(self, name: str, timeout_s: float = READY_TIMEOUT_S) -> dict[str, Any]:
        """Poll until KServe has reconciled this generation and reports Ready (backoff 1 s to 15 s)."""
        deadline, delay = self.clock() + timeout_s, 1.0
        while True:
            service = self._existing(name)
            condition = ready_condition(service) or {}
            reconciled = service.get("status", {}).get("observedGeneration", 0) >= service["metadata"].get("generation", 0)
            if reconciled and condition.get("status") == "True":
                return service
            if reconciled and condition.get("status") == "False" and condition.get("reason"):
                raise KfkitError(f"InferenceService {self.namespace}/{name} is not ready: {condition['reason']}: "
                                 f"{condition.get('message', '')}".rstrip(": "))
            if self.clock() >= deadline:
                state = " ".join(filter(None, [condition.get("status", "unknown"), condition.get("message", "")]))
                raise KfkitError(f"InferenceService {self.namespace}/{name} not ready after {timeout_s:.0f}s "
                                 f"(Ready: {state})")
            self.sleep(delay)
            delay = min(delay * 2, 15.0)


def _is_kfkit_explainer(explainer: dict[str, Any] | None) -> bool:
    """An explainer kfkit wrote (explainer_spec): its pods carry kfkit's model label."""
    return bool(explainer) and MODEL_LABEL in (explainer.get("labels") or {})


def _reason(exc) -> str:
    import json

    try:
        return json.loads(exc.body).get("message") or str(exc.reason)
    except (TypeError, ValueError, AttributeError):
        return f"{exc.status} {exc.reason}"


def _custom_objects_api():
    """Inside a pod its service account; elsewhere the kubeconfig's current context."""
    import os

    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            # the client reads KUBECONFIG once, when first imported: read it now
            config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None)
        except (config.ConfigException, FileNotFoundError, TypeError) as exc:
            raise ConfigError("backend kserve needs a Kubernetes cluster: run inside one (a Kubeflow pipeline step) "
                              f"or set a kubeconfig context (KUBECONFIG): {exc}") from exc
    return client.CustomObjectsApi()
