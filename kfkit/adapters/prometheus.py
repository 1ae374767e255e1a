"""Prometheus' HTTP API: what a KServe InferenceService's revisions answered, as Knative counts it.

The only module that talks to Prometheus. In KServe's Serverless mode every predictor pod runs
Knative's queue-proxy, which exports (Knative Serving's documented, stable queue-proxy metrics):
- `revision_request_count` (counter; labels namespace_name, revision_name, response_code,
  response_code_class): every request routed to the revision;
- `revision_request_latencies` (histogram, milliseconds; same labels): their response times.
Counts over a window are Prometheus' own `increase()` and percentiles its `histogram_quantile()`,
evaluated by the server (GET /api/v1/query and /api/v1/query_range), never recomputed here.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from kfkit.errors import ConfigError, KfkitError

REQUEST_COUNT = "revision_request_count"
REQUEST_LATENCIES = "revision_request_latencies"
TIMEOUT_S = 30.0
MIN_STEP_SECONDS = 60  # a range shorter than two scrapes (15-30 s apart, commonly) holds no increase


def seconds(start: float, end: float, slices: int = 1) -> int:
    """Whole seconds per slice of [start, end] (a PromQL range), at least MIN_STEP_SECONDS when sliced."""
    width = math.ceil(max(end - start, 0.0) / max(slices, 1))
    return max(width, MIN_STEP_SECONDS) if slices > 1 else max(width, 1)


def selector(namespace: str, revisions: list[str]) -> str:
    """The label matcher of these revisions in this namespace (names are Kubernetes names: no quoting needed,
    checked anyway, since a quote would change the query)."""
    for value in [namespace, *revisions]:
        if not value or any(c in value for c in '"\\{}|'):
            raise ConfigError(f"not a Kubernetes name: {value!r}")
    return f'namespace_name="{namespace}",revision_name=~"{"|".join(revisions)}"'


class PrometheusAdapter:
    def __init__(self, url: str, timeout_s: float = TIMEOUT_S):
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"prometheus_url must be the http(s):// address of the cluster's Prometheus "
                              f"(where Knative's queue-proxy metrics are scraped), got {url!r}")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def _get(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        address = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(address, timeout=self.timeout_s) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:  # Prometheus answers 400/422/503 with its JSON error
            try:
                body = json.loads(exc.read())
            except ValueError:
                raise KfkitError(f"Prometheus at {self.url} answered {exc.code} to {params['query']!r}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise KfkitError(f"Prometheus at {self.url} could not be read: {exc}") from exc
        if not isinstance(body, dict) or body.get("status") != "success":
            error = f"{body.get('errorType')}: {body.get('error')}" if isinstance(body, dict) else "not its JSON"
            raise KfkitError(f"Prometheus refused {params['query']!r}: {error}")
        return body["data"]["result"]  # always there on success (Prometheus' HTTP API)

    def instant(self, query: str, at: float) -> list[tuple[dict[str, str], float]]:
        """(labels, value) of each series of an instant query at time `at`; NaN answers (no data) left out."""
        out = []
        for series in self._get("query", {"query": query, "time": f"{at:.3f}"}):
            value = float(series["value"][1])
            if math.isfinite(value):
                out.append((series["metric"], value))
        return out

    def range(self, query: str, start: float, end: float, step: int) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        """(labels, [(time, value)]) of each series of a range query; NaN points left out."""
        out = []
        for series in self._get("query_range", {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                                "step": f"{step}s"}):
            points = [(float(t), float(v)) for t, v in series["values"] if math.isfinite(float(v))]
            out.append((series["metric"], points))
        return out

    def requests(self, namespace: str, revisions: list[str], start: float, end: float) -> list[tuple[str, str, float]]:
        """(revision, response_code_class, requests) over [start, end]."""
        query = (f"sum by (revision_name, response_code_class) "
                 f"(increase({REQUEST_COUNT}{{{selector(namespace, revisions)}}}[{seconds(start, end)}s]))")
        return [(m["revision_name"], m["response_code_class"], v) for m, v in self.instant(query, end)]

    def latency(self, namespace: str, revisions: list[str], quantile: float, start: float, end: float) -> float | None:
        """The quantile of these revisions' response times together, in ms, over [start, end]; None without requests."""
        query = (f"histogram_quantile({quantile}, sum by (le) "
                 f"(increase({REQUEST_LATENCIES}_bucket{{{selector(namespace, revisions)}}}[{seconds(start, end)}s])))")
        values = [v for _, v in self.instant(query, end)]
        return values[0] if values else None

    def timeline(self, namespace: str, revisions: list[str], start: float, end: float, slices: int):
        """(requests by (revision, class), p99 by revision), each a range series with one point per slice."""
        step = seconds(start, end, slices)
        match = selector(namespace, revisions)
        counts = self.range(f"sum by (revision_name, response_code_class) (increase({REQUEST_COUNT}{{{match}}}"
                            f"[{step}s]))", start + step, end, step)
        p99 = self.range(f"histogram_quantile(0.99, sum by (revision_name, le) (increase({REQUEST_LATENCIES}_bucket"
                         f"{{{match}}}[{step}s])))", start + step, end, step)
        return counts, p99
