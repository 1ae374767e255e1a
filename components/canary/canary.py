"""Watch a canary for a window, judge it (analysis.analyze) and act on the verdict.

Local backend: the endpoint's state (kfkit.serving.endpoints) names the canary (the newest deployed version
with traffic) and what it is compared with (the others with traffic); the server's request logs say
what each served. On `promote` the canary takes 100% and the registry's `champion` alias moves to it;
on `rollback` the split goes back to the one before the canary and `champion` back to the version
the canary was compared with, the canary's version tagged kfkit.canary=rejected; `inconclusive`
(too little traffic after the window and its extensions) leaves the split as it is, or rolls back
with on_inconclusive="rollback".
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from kfkit.components.canary.analysis import (CANARY_TAG, INCONCLUSIVE, PROMOTE, ROLLBACK, Analysis, Served, Thresholds,
                                             analyze)
from kfkit.components.canary.labels import warehouse_labels
from kfkit.errors import ConfigError

log = logging.getLogger("kfkit.canary")
ON_INCONCLUSIVE = ("keep", "rollback")


@dataclass
class CanaryResult:
    endpoint: str
    canary: dict[str, Any]
    baseline: list[dict[str, Any]]
    analysis: Analysis
    action: str
    split: dict[str, int]
    window: tuple[float, float]
    timeline: dict[str, list[list[float]]] = field(default_factory=dict)
    served: tuple[Served, Served] | None = None  # (canary, baseline): what the report plots

    @property
    def verdict(self) -> str:
        return self.analysis.verdict

    def to_json(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "verdict": self.verdict, "action": self.action,
                "canary": {k: self.canary[k] for k in ("id", "model", "version")},
                "baseline": [{k: m[k] for k in ("id", "model", "version")} for m in self.baseline],
                "split": self.split, "window": list(self.window), "analysis": self.analysis.to_json()}


def sides(state: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the canary, the versions it is compared with): the newest deployed version with traffic, and the rest with traffic."""
    live = [m for m in state["deployed_models"] if m.get("traffic", 0) > 0]
    if len(live) < 2:
        raise ConfigError(f"endpoint {state['endpoint']!r} has no canary: "
                          f"{'one version takes all its traffic' if live else 'no version takes traffic'}")
    canary = max(live, key=lambda m: m.get("deployed_at", 0))
    return canary, [m for m in live if m["id"] != canary["id"]]


def _merged(name: str, parts: list[Served]) -> Served:
    merged = Served(name)
    for part in parts:
        merged.requests += part.requests
        merged.errors += part.errors
        merged.latencies_ms += part.latencies_ms
        merged.latency_times += part.latency_times
        merged.predictions += part.predictions
        merged.labelled += part.labelled
    return merged


class LocalCanary:
    """A canary on kfkit's server: endpoint state in kfkit.serving.endpoints, figures in the server's request
    logs, champion and tags in the MLflow registry."""

    def __init__(self, endpoint_name: str, local_root: str | None = None, registry=None):
        from kfkit.config import local_root as resolve_root
        from kfkit.serving.endpoints import LocalEndpoints

        self.name = endpoint_name
        self.root = resolve_root(local_root)
        self.endpoints = LocalEndpoints(self.root)
        self._registry = registry

    @property
    def registry(self):
        if self._registry is None:
            from kfkit.adapters.mlflow_registry import MlflowRegistry

            self._registry = MlflowRegistry(self.root)
        return self._registry

    def state(self) -> dict[str, Any]:
        state = self.endpoints.load(self.name)
        if state is None:
            raise ConfigError(f"no local endpoint {self.name!r} under {self.root}")
        return state

    def labels(self, table: str, request_key: str, label_column: str) -> dict[str, Any]:
        return warehouse_labels(self.root, table, request_key, label_column)

    def served(self, canary: dict, baseline: list[dict], start: float, end: float, labels, request_key: str):
        from kfkit.components.canary.traffic import read_served

        served, timeline = read_served(self.root / "request_logs" / self.name, start, end, labels=labels,
                                       request_key=request_key)
        return (_merged(f"canary {canary['id']}", [served.get(canary["id"], Served(canary["id"]))]),
                _merged("baseline " + ", ".join(m["id"] for m in baseline),
                        [served.get(m["id"], Served(m["id"])) for m in baseline]), timeline)

    def promote(self, canary: dict) -> None:
        self.endpoints.promote(self.name, canary["id"])

    def rollback(self) -> None:
        self.endpoints.rollback(self.name)

    def set_champion(self, model: dict) -> None:
        self.registry.set_alias(model["model"], model["version"], "champion")

    def tag(self, model: dict, value: str) -> None:
        self.registry.tag_version(model["model"], model["version"], CANARY_TAG, value)


def analyze_canary(endpoint_name: str, *, backend: str = "local", local_root: str | None = None,
                   window_seconds: float = 600, max_extensions: int = 0, on_inconclusive: str = "keep",
                   thresholds: Thresholds | None = None, labels_table: str = "", request_key: str = "",
                   label_column: str = "", act: bool = True, poll_seconds: float = 5.0,
                   clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                   registry=None, endpoint_backend: str = "", project: str = "", location: str = "",
                   request_logging_table: str = "", bigquery_location: str = "US", namespace: str = "",
                   prometheus_url: str = "", request_logger_url: str = "", source=None) -> CanaryResult:
    """Watch the endpoint's canary for window_seconds (extended up to max_extensions times while either
    side has fewer than min_requests), then judge it and, with act, promote or roll it back.

    backend/endpoint_backend as deploy's: local (kfkit's server), vertex (bigquery) or kserve; project,
    location (Vertex region), request_logging_table and bigquery_location for Vertex; namespace,
    prometheus_url and request_logger_url (the log sink) for KServe.
    """
    from kfkit.components.deploy.deploy import resolve_backend

    if on_inconclusive not in ON_INCONCLUSIVE:
        raise ConfigError(f"on_inconclusive must be one of {', '.join(ON_INCONCLUSIVE)}, got {on_inconclusive!r}")
    if window_seconds < 0 or max_extensions < 0:
        raise ConfigError(f"window_seconds and max_extensions must be >= 0, got {window_seconds} and {max_extensions}")
    t = (thresholds or Thresholds()).check()
    if source is None:
        chosen = resolve_backend(backend, endpoint_backend)
        if chosen == "local":
            source = LocalCanary(endpoint_name, local_root, registry)
        elif chosen == "vertex":
            from kfkit.components.canary.vertex import VertexCanary

            source = VertexCanary(endpoint_name, project=project, location=location,
                                  request_logging_table=request_logging_table, bigquery_location=bigquery_location)
        else:
            from kfkit.components.canary.kserve import KServeCanary

            source = KServeCanary(endpoint_name, namespace=namespace, prometheus_url=prometheus_url,
                                  request_logger_url=request_logger_url, local_root=local_root, registry=registry)
    canary, baseline = sides(source.state())
    labels = source.labels(labels_table, request_key, label_column) if labels_table else None
    start = float(canary.get("deployed_at", 0))
    deadline, extensions = clock() + window_seconds, 0
    log.info("watching canary %s (version %s, %s%%) against %s for %.0fs", canary["id"], canary["version"],
             canary["traffic"], ", ".join(m["id"] for m in baseline), window_seconds)
    while True:
        now = clock()
        if now >= deadline:
            canary_served, baseline_served, timeline = source.served(canary, baseline, start, now + 1e-6, labels,
                                                                     request_key)
            if min(canary_served.requests, baseline_served.requests) >= t.min_requests or extensions >= max_extensions:
                break
            extensions += 1
            deadline += window_seconds
            log.info("too little traffic (canary %d, baseline %d requests): window extended (%d of %d)",
                     canary_served.requests, baseline_served.requests, extensions, max_extensions)
        sleep(min(poll_seconds, max(deadline - now, 0.0)))
    analysis = analyze(canary_served, baseline_served, t)
    action = "none"
    if act:
        action = _act(source, canary, baseline, analysis, on_inconclusive)
    split = {m["id"]: m["traffic"] for m in source.state()["deployed_models"]}
    log.info("canary %s: %s (%s); %s", canary["id"], analysis.verdict, analysis.reason, action)
    return CanaryResult(endpoint_name, canary, baseline, analysis, action, split, (start, now), timeline,
                        (canary_served, baseline_served))


def _act(source, canary: dict, baseline: list[dict], analysis: Analysis, on_inconclusive: str) -> str:
    decision = analysis.verdict
    if decision == INCONCLUSIVE:
        if on_inconclusive == "keep":
            return "kept the split (inconclusive)"
        decision = ROLLBACK
    still = {m["id"]: m.get("traffic", 0) for m in source.state()["deployed_models"] if m.get("traffic", 0)}
    watched = {m["id"]: m["traffic"] for m in [canary, *baseline]}
    if still != watched:
        # the whole split, not only the canary's share: a baseline drained or replaced meanwhile would
        # make a rollback send traffic back to a version that no longer serves
        raise ConfigError(f"endpoint {source.name!r} changed while its canary was watched: the split was "
                          f"{_split_text(watched)}, it is now {_split_text(still)}; nothing done")
    if decision == PROMOTE:
        source.promote(canary)
        source.set_champion(canary)
        source.tag(canary, "promoted")
        return f"promoted {canary['id']} to 100%; champion is version {canary['version']}"
    source.rollback()
    previous = max(baseline, key=lambda m: m["traffic"])
    source.set_champion(previous)
    source.tag(canary, "rejected")
    return (f"rolled back to the split before {canary['id']}; champion is version {previous['version']}, "
            f"version {canary['version']} tagged rejected")


def _split_text(split: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}%" for k, v in sorted(split.items())) or "empty"


def status_lines(result: CanaryResult) -> list[str]:
    """A running canary's figures so far, and the verdict they would give now (nothing acted on)."""
    a = result.analysis
    lines = [f"endpoint {result.endpoint}: canary {result.canary['id']} (version {result.canary['version']}, "
             f"{result.canary['traffic']}%) against {', '.join(m['id'] for m in result.baseline)}"]
    for name, f in (("canary", a.canary), ("baseline", a.baseline)):
        p50, p99 = (f"{f[k]:.1f} ms" if f[k] is not None else "-" for k in ("latency_p50_ms", "latency_p99_ms"))
        lines.append(f"  {name:<9} {f['requests']:>7} requests  {f['errors']:>5} errors ({f['error_rate']:.2%})  "
                     f"p50 {p50}  p99 {p99}")
    lines += [f"  {c.status:<12} {c.name}: {c.detail}" for c in a.criteria]
    lines.append(f"verdict if judged now: {a.verdict} ({a.reason})")
    return lines
