"""A fake of Cloud Monitoring's MetricService.ListTimeSeries on the wire (TLS on 127.0.0.1, tests/grpc_tls.py),
holding the requests a Vertex AI endpoint answered and exporting them as Vertex does:
aiplatform.googleapis.com/prediction/online/response_count (DELTA INT64, labels deployed_model_id,
response_code) and prediction/online/prediction_latencies (DELTA DISTRIBUTION in ms, latency_type) for
the monitored resource aiplatform.googleapis.com/Endpoint (https://cloud.google.com/monitoring/api/metrics_gcp_a_b).

Enforced, from google.cloud.monitoring_v3.types (metric_service.py, common.py): `name` is projects/{id or
number}; the filter names one metric type; alignment_period is at least 60 seconds and required with an
aligner other than ALIGN_NONE; a cross-series reducer needs an aligner; reduced series keep only the
group_by labels; a DELTA metric aligned with ALIGN_DELTA and REDUCE_SUM stays INT64, a percentile of a
distribution is a DOUBLE.
"""

from __future__ import annotations

import re

import grpc
import numpy as np
from google.cloud import monitoring_v3

from tests.grpc_tls import Refused, rpcs, service_handler

PREFIX = "aiplatform.googleapis.com/prediction/online/"
FILTER_TERM = re.compile(r'\s*([a-z_.]+)\s*=\s*(?:"([^"]*)"|one_of\(([^)]*)\))\s*')


class FakeMonitoring:
    def __init__(self, project_id: str = "my-proj", project_number: str = "123456789012"):
        self.projects = {project_id, project_number}
        # [(endpoint id, deployed model id, HTTP status, latency ms, epoch seconds)]
        self.requests: list[tuple[str, str, int, float, float]] = []
        self.seen: list = []

    def _terms(self, text: str) -> dict[str, set[str]]:
        terms = {}
        for term in re.split(r"\s+AND\s+", text.strip()):
            match = FILTER_TERM.fullmatch(term)
            if not match:
                raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"cannot parse filter term {term!r}")
            key, value, values = match.groups()
            terms[key] = {value} if value is not None else {v.strip().strip('"') for v in values.split(",")}
        if "metric.type" not in terms:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "the filter must name a metric.type")
        return terms

    def list_time_series(self, request):
        self.seen.append(request)
        match = re.fullmatch(r"projects/([^/]+)", request.name)
        if not match or match.group(1) not in self.projects:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"name {request.name!r} is not this project")
        terms = self._terms(request.filter)
        metric = next(iter(terms["metric.type"]))
        if metric not in (PREFIX + "response_count", PREFIX + "prediction_latencies"):
            return monitoring_v3.ListTimeSeriesResponse()
        if terms.get("resource.type") != {"aiplatform.googleapis.com/Endpoint"}:
            return monitoring_v3.ListTimeSeriesResponse()
        aggregation = request.aggregation
        aligner, reducer = aggregation.per_series_aligner, aggregation.cross_series_reducer
        period = aggregation.alignment_period.seconds
        Aligner, Reducer = monitoring_v3.Aggregation.Aligner, monitoring_v3.Aggregation.Reducer
        # Aggregation.alignment_period (common.py): at least 60 seconds; required with an aligner
        if aligner != Aligner.ALIGN_NONE and period < 60:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"alignment_period {period}s: at least 60s")
        if reducer != Reducer.REDUCE_NONE and aligner == Aligner.ALIGN_NONE:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "a cross_series_reducer needs a per_series_aligner")
        if aligner != Aligner.ALIGN_DELTA:
            raise Refused(grpc.StatusCode.UNIMPLEMENTED, "the fake aligns DELTA metrics with ALIGN_DELTA only")
        start, end = request.interval.start_time.timestamp(), request.interval.end_time.timestamp()
        counts = metric.endswith("response_count")
        if counts and reducer != Reducer.REDUCE_SUM:
            raise Refused(grpc.StatusCode.UNIMPLEMENTED, "response counts are summed")
        if not counts and reducer not in (Reducer.REDUCE_PERCENTILE_50, Reducer.REDUCE_PERCENTILE_99):
            raise Refused(grpc.StatusCode.UNIMPLEMENTED, "latencies are reduced to a percentile")
        if not counts and terms.get("metric.labels.latency_type", {"total"}) != {"total"}:
            return monitoring_v3.ListTimeSeriesResponse()
        group_by = [g.removeprefix("metric.label.") for g in aggregation.group_by_fields]
        wanted_ids = terms.get("metric.labels.deployed_model_id")
        groups: dict = {}
        for endpoint_id, deployed, status, ms, t in self.requests:
            if {endpoint_id} != terms.get("resource.labels.endpoint_id", {endpoint_id}):
                continue
            if wanted_ids is not None and deployed not in wanted_ids or not start <= t < end:
                continue
            # alignment periods end at the interval's end
            period_end = end - period * int((end - t) // period)
            labels = {"deployed_model_id": deployed, "response_code": str(status)}
            key = tuple((g, labels[g]) for g in group_by if g in labels)
            groups.setdefault(key, {}).setdefault(period_end, []).append(ms)
        series = []
        for key, points in sorted(groups.items()):
            if counts:
                values = [{"int64_value": len(ms)} for ms in points.values()]
                value_type = "INT64"
            else:
                q = 50 if reducer == Reducer.REDUCE_PERCENTILE_50 else 99
                values = [{"double_value": float(np.percentile(ms, q))} for ms in points.values()]
                value_type = "DOUBLE"
            series.append(monitoring_v3.TimeSeries(
                metric={"type": metric, "labels": dict(key)}, metric_kind="DELTA", value_type=value_type,
                points=[{"interval": {"end_time": {"seconds": int(e)}, "start_time": {"seconds": int(e - period)}},
                         "value": v} for e, v in sorted(zip(points, values), key=lambda p: p[0], reverse=True)]))
        return monitoring_v3.ListTimeSeriesResponse(time_series=series)

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        from google.cloud.monitoring_v3.services.metric_service.transports.grpc import MetricServiceGrpcTransport

        path, request_class, _ = rpcs(MetricServiceGrpcTransport)["ListTimeSeries"]
        return [service_handler(path.split("/")[1], {"ListTimeSeries": (request_class, self.list_time_series)})]
