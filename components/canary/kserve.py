"""A canary on a KServe InferenceService: the same analysis, the cluster's own figures.

- Which revision is the canary: the InferenceService's status (status.components.predictor.traffic:
  the latest revision with canaryTrafficPercent, the previous rolled-out one with the rest); which
  registered versions they serve: the predictor's version label and the annotation deploy wrote
  (kfkit.io/previous-model-version), when it came: kfkit.io/deployed-at.
- Requests, errors (non-2xx) and latency p50/p99: Knative's queue-proxy metrics in the cluster's
  Prometheus (kfkit.adapters.prometheus), which count every request the revision was routed.
- Predictions (and, joined by request key, ground truth): what KServe's inference logger posted to
  kfkit's log sink (deploy's request_logger_url), read back from the sink by model version.
- Acting: KServe's own promotion (canaryTrafficPercent removed) and rollback (set to 0) through
  kfkit.adapters.kserve; `champion` and the verdict tag in the MLflow registry KServe deploys from.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from kfkit.components.canary.analysis import Served
from kfkit.components.canary.traffic import add_answers
from kfkit.errors import ConfigError

BUCKETS = 20


class KServeCanary:
    def __init__(self, endpoint_name: str, *, namespace: str = "", prometheus_url: str, request_logger_url: str,
                 local_root: str | None = None, kserve=None, prometheus=None, registry=None,
                 read_records: Callable | None = None):
        if not prometheus_url:
            raise ConfigError("prometheus_url is empty: a canary on KServe is judged on the request counts and "
                              "latencies Knative's queue-proxy exports to the cluster's Prometheus")
        if not request_logger_url:
            raise ConfigError("request_logger_url is empty: a canary on KServe is judged on the predictions KServe's "
                              "inference logger posts to a kfkit log-sink (deploy's request_logger_url)")
        if prometheus is None:
            from kfkit.adapters.prometheus import PrometheusAdapter

            prometheus = PrometheusAdapter(prometheus_url)
        if kserve is None:
            from kfkit.adapters.kserve import KServeAdapter

            kserve = KServeAdapter(namespace)
        if read_records is None:
            from kfkit.serving.log_sink import read_records
        self.name = endpoint_name
        self.kserve, self.prometheus, self.read_records = kserve, prometheus, read_records
        self.logger_url = request_logger_url
        self.local_root = local_root
        self._registry = registry

    @property
    def registry(self):
        if self._registry is None:
            from kfkit.adapters.mlflow_registry import MlflowRegistry

            self._registry = MlflowRegistry(self.local_root)
        return self._registry

    def state(self) -> dict[str, Any]:
        from kfkit.adapters import kserve as k

        service = self.kserve.get(self.name)
        if service is None:
            raise ConfigError(f"no InferenceService {self.name!r} in namespace {self.kserve.namespace!r}")
        labels = service["spec"]["predictor"].get("labels", {})
        latest, previous = k.served_version(service) or "", k.annotation(service, k.PREVIOUS_VERSION)
        try:
            deployed_at = float(k.annotation(service, k.DEPLOYED_AT) or 0)
        except ValueError:
            deployed_at = 0.0
        entries = service.get("status", {}).get("components", {}).get("predictor", {}).get("traffic", []) or []
        models = []
        for entry in entries:
            is_latest = bool(entry.get("latestRevision"))
            version = latest if is_latest else previous
            percent = int(entry.get("percent") or 0)
            if percent and not version:
                raise ConfigError(f"InferenceService {self.name}: which registered version revision "
                                  f"{entry.get('revisionName')} serves is unknown (deployed without kfkit's "
                                  f"{k.PREVIOUS_VERSION} annotation, before kfkit 0.8.0)")
            models.append({"id": entry.get("revisionName", ""), "model": labels.get(k.MODEL_LABEL, self.name),
                           "version": version, "traffic": percent, "deployed_at": deployed_at if is_latest else 0.0})
        return {"endpoint": self.name, "deployed_models": models}

    def labels(self, table: str, request_key: str, label_column: str) -> dict[str, Any]:
        from kfkit.components.canary.labels import warehouse_labels

        return warehouse_labels(self.local_root, table, request_key, label_column)

    def served(self, canary: dict, baseline: list[dict], start: float, end: float, labels, request_key: str):
        namespace = self.kserve.namespace
        canary_side = Served(f"canary {canary['id']}")
        base = Served("baseline " + ", ".join(m["id"] for m in baseline))
        by_revision = {canary["id"]: canary_side, **{m["id"]: base for m in baseline}}
        counted = False  # whether Prometheus has any request series for these revisions
        for side, revisions in ((canary_side, [canary["id"]]), (base, [m["id"] for m in baseline])):
            found = self.prometheus.requests(namespace, revisions, start, end)
            counted = counted or bool(found)
            for _, code_class, n in found:
                side.requests += round(n)
                side.errors += 0 if code_class == "2xx" else round(n)
            for q in (50, 99):
                value = self.prometheus.latency(namespace, revisions, q / 100, start, end)
                if value is not None:
                    side.latency_percentiles[q] = value
        by_version = {str(canary["version"]): canary_side, **{str(m["version"]): base for m in baseline}}
        logged = 0
        for record in self.read_records(self.logger_url, self.name, start, end):
            logged += 1
            side = by_version.get(str(record.get("model_version")))
            predictions, instances = record.get("predictions"), record.get("instances")
            if side is None or not isinstance(predictions, list):
                continue
            add_answers(side, instances, predictions, labels, request_key)
        if logged and not counted:
            # requests were answered, yet Prometheus counts none: never judge on zero
            from kfkit.adapters.prometheus import REQUEST_COUNT

            raise ConfigError(f"the log sink has {logged} answered requests of {self.name} in the window but Prometheus "
                              f"at {self.prometheus.url} has no {REQUEST_COUNT} series for {', '.join(by_revision)} "
                              f"in namespace {namespace}: does it scrape Knative's queue-proxy, under the names "
                              "Knative Serving documents up to 1.18 (1.19 moved them to OpenTelemetry's)?")
        return canary_side, base, self._timeline(list(by_revision), start, end)

    def _timeline(self, revisions: list[str], start: float, end: float) -> dict[str, list[list[float]]]:
        """Per revision and slice of the window: [requests, errors, p99 ms], from Prometheus."""
        width = max(end - start, 1e-9) / BUCKETS
        series = {r: [[0, 0, 0.0] for _ in range(BUCKETS)] for r in revisions}
        counts, p99 = self.prometheus.timeline(self.kserve.namespace, revisions, start, end, BUCKETS)

        def slot(labels: dict, at: float) -> list:
            # a point covers the range just before it: the slice that range ends in. The queries match
            # exactly these revisions (a PromQL regex is anchored) and group by revision_name.
            index = min(max(math.ceil((at - start) / width) - 1, 0), BUCKETS - 1)
            return series[labels["revision_name"]][index]

        for labels, points in counts:
            for at, value in points:
                s = slot(labels, at)
                s[0] += round(value)
                s[1] += 0 if labels["response_code_class"] == "2xx" else round(value)
        for labels, points in p99:
            for at, value in points:
                s = slot(labels, at)
                s[2] = max(s[2], value)
        return series

    def promote(self, canary: dict) -> None:
        self.kserve.promote(self.name)

    def rollback(self) -> None:
        self.kserve.rollback(self.name)

    def set_champion(self, model: dict) -> None:
        self.registry.set_alias(model["model"], model["version"], "champion")

    def tag(self, model: dict, value: str) -> None:
        from kfkit.components.canary.analysis import CANARY_TAG

        self.registry.tag_version(model["model"], model["version"], CANARY_TAG, value)
