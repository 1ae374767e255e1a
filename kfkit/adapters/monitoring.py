"""Cloud Monitoring: what a Vertex AI endpoint's deployed models answered, as Vertex itself counts it.

The only module that calls google-cloud-monitoring. Vertex exports, for the monitored resource
`aiplatform.googleapis.com/Endpoint` (labels endpoint_id, location), per deployed model:
- `prediction/online/response_count` (DELTA, INT64; labels deployed_model_id, response_code): one per
  answered request, by HTTP status;
- `prediction/online/prediction_latencies` (DELTA, DISTRIBUTION, ms; labels deployed_model_id,
  latency_type: model, overhead or total).
Percentiles are Cloud Monitoring's own (REDUCE_PERCENTILE_50/99 over the merged distributions), not
recomputed here from buckets. Metrics arrive a few minutes after the requests (documented in
docs/canary.md): a window ending now undercounts its last minutes.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

METRIC_PREFIX = "aiplatform.googleapis.com/prediction/online/"
RESOURCE_TYPE = "aiplatform.googleapis.com/Endpoint"
MIN_ALIGNMENT_SECONDS = 60  # Cloud Monitoring refuses a shorter alignment period
# a Private Service Connect endpoint (or any other) for a step in a container: host[:port]
ENDPOINT_ENV = "KFKIT_MONITORING_API_ENDPOINT"
PERCENTILES = {50: "REDUCE_PERCENTILE_50", 99: "REDUCE_PERCENTILE_99"}


@dataclass(frozen=True)
class Point:
    deployed_model_id: str  # "" when the series was reduced across deployed models
    end: float  # the end of the point's alignment period, epoch seconds
    value: float
    response_code: str = ""


def alignment(start: float, end: float, slices: int = 1) -> int:
    """Whole seconds per slice of [start, end], at least Cloud Monitoring's minimum."""
    return max(MIN_ALIGNMENT_SECONDS, math.ceil(max(end - start, 0.0) / max(slices, 1)))


class MonitoringAdapter:
    def __init__(self, project: str, client=None):
        if not project:
            from kfkit.errors import ConfigError

            raise ConfigError("project is required to read a Vertex AI endpoint's metrics from Cloud Monitoring")
        if client is None:
            from google.cloud import monitoring_v3

            endpoint = os.environ.get(ENDPOINT_ENV)
            client = monitoring_v3.MetricServiceClient(client_options={"api_endpoint": endpoint} if endpoint else None)
        self.project = project
        self.client = client

    def _list(self, metric: str, *, endpoint_id: str, deployed_model_ids: list[str], start: float, end: float,
              period: int, reducer: str, group_by: list[str], extra: str = "") -> list[Any]:
        from google.cloud import monitoring_v3

        ids = ", ".join(f'"{i}"' for i in deployed_model_ids)
        where = (f'metric.type = "{METRIC_PREFIX}{metric}" AND resource.type = "{RESOURCE_TYPE}" '
                 f'AND resource.labels.endpoint_id = "{endpoint_id}" '
                 f"AND metric.labels.deployed_model_id = one_of({ids}){extra}")
        aggregation = monitoring_v3.Aggregation(
            alignment_period={"seconds": period},
            per_series_aligner=monitoring_v3.Aggregation.Aligner.ALIGN_DELTA,
            cross_series_reducer=getattr(monitoring_v3.Aggregation.Reducer, reducer),
            group_by_fields=group_by)
        request = monitoring_v3.ListTimeSeriesRequest(
            name=f"projects/{self.project}", filter=where,
            interval=monitoring_v3.TimeInterval(start_time={"seconds": int(math.floor(start))},
                                                end_time={"seconds": int(math.ceil(end))}),
            view=monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL, aggregation=aggregation)
        return list(self.client.list_time_series(request=request))

    def responses(self, endpoint_id: str, deployed_model_ids: list[str], start: float, end: float,
                  period: int) -> list[Point]:
        """Answered requests per deployed model, HTTP status and alignment period."""
        points = []
        for series in self._list("response_count", endpoint_id=endpoint_id, deployed_model_ids=deployed_model_ids,
                                 start=start, end=end, period=period, reducer="REDUCE_SUM",
                                 group_by=["metric.label.deployed_model_id", "metric.label.response_code"]):
            labels = dict(series.metric.labels)
            for p in series.points:
                points.append(Point(labels.get("deployed_model_id", ""), p.interval.end_time.timestamp(),
                                    float(p.value.int64_value or p.value.double_value),
                                    labels.get("response_code", "")))
        return points

    def latency(self, endpoint_id: str, deployed_model_ids: list[str], q: int, start: float, end: float,
                period: int, per_model: bool = False) -> list[Point]:
        """The q-th percentile (50 or 99) of total latency in ms, over all the given deployed models
        together (per_model: each apart), per alignment period."""
        points = []
        for series in self._list("prediction_latencies", endpoint_id=endpoint_id,
                                 deployed_model_ids=deployed_model_ids, start=start, end=end, period=period,
                                 reducer=PERCENTILES[q],
                                 group_by=["metric.label.deployed_model_id"] if per_model else [],
                                 extra=' AND metric.labels.latency_type = "total"'):
            labels = dict(series.metric.labels)
            for p in series.points:
                points.append(Point(labels.get("deployed_model_id", ""), p.interval.end_time.timestamp(),
                                    float(p.value.double_value)))
        return points
