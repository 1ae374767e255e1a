"""The canary analysis on a Vertex AI endpoint, checked at the SDK boundaries.

What Vertex provides, and so what the fakes stand in for:
- Cloud Monitoring metrics of the monitored resource aiplatform.googleapis.com/Endpoint
  (https://cloud.google.com/monitoring/api/metrics_gcp_a_b#gcp-aiplatform):
  prediction/online/response_count (labels deployed_model_id, response_code) and
  prediction/online/prediction_latencies (labels deployed_model_id, latency_type), both DELTA;
- the request-response logging table (https://cloud.google.com/vertex-ai/docs/predictions/online-prediction-logging):
  columns endpoint, deployed_model_id, logging_time, request_id, request_payload and
  response_payload, the payloads as JSON strings of the request and response bodies;
- the Endpoint API's traffic split and the Model Registry's version aliases and labels.
The Monitoring client is mock.create_autospec of the real MetricServiceClient, answering with the
real TimeSeries messages; BigQuery goes through kfkit's real BigQueryAdapter over a client bound to
the real signatures; aiplatform is tests.test_vertex_adapter's autospecced fake.
"""

import datetime as dt
import json
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pyarrow as pa
import pytest
from google.cloud import bigquery, monitoring_v3

from kfkit.adapters.bigquery import BigQueryAdapter
from kfkit.adapters.monitoring import MonitoringAdapter, Point, alignment
from kfkit.adapters.vertex import VertexAdapter, previous_split_labels
from kfkit.components.canary.analysis import PROMOTE, ROLLBACK, Thresholds
from kfkit.components.canary.canary import analyze_canary
from kfkit.components.canary.vertex import VertexCanary, logging_table_id
from kfkit.errors import ConfigError
from tests.fakes import bound_to
from tests.test_bigquery_adapter import FakeClient, FakeJob
from tests.test_vertex_adapter import FakeEndpoint, Recorder, deployed_model, fake_aiplatform

MODEL = "projects/p/locations/us-central1/models/123"
T0 = 1_700_000_000.0
OLD, NEW = "1001", "1002"  # deployed model ids: version 1 (the champion), version 2 (the canary)


class FakeCloudMonitoring:
    """Answers ListTimeSeries from per-request records, as Cloud Monitoring aggregates them: response
    counts summed by the group_by labels, latency percentiles over the merged samples."""

    def __init__(self, requests):
        self.requests = requests  # [(deployed model id, HTTP status, latency ms)]
        self.client = mock.create_autospec(monitoring_v3.MetricServiceClient, instance=True, spec_set=True)
        self.client.list_time_series.side_effect = self.list_time_series
        self.seen = []

    def list_time_series(self, request):
        self.seen.append(request)
        ids = {i.strip('" ') for i in request.filter.split("one_of(")[1].split(")")[0].split(",")}
        mine = [r for r in self.requests if r[0] in ids]
        end = {"interval": {"end_time": request.interval.end_time}}
        group_by = list(request.aggregation.group_by_fields)
        if "response_count" in request.filter:
            counts = {}
            for deployed, status, _ in mine:
                counts[(deployed, str(status))] = counts.get((deployed, str(status)), 0) + 1
            return [monitoring_v3.TimeSeries(metric={"labels": {"deployed_model_id": d, "response_code": c}},
                                             points=[{**end, "value": {"int64_value": n}}])
                    for (d, c), n in sorted(counts.items())]
        q = {"REDUCE_PERCENTILE_50": 50, "REDUCE_PERCENTILE_99": 99}[request.aggregation.cross_series_reducer.name]
        groups = sorted({r[0] for r in mine}) if group_by else [""]
        return [monitoring_v3.TimeSeries(
            metric={"labels": {"deployed_model_id": g} if g else {}},
            points=[{**end, "value": {"double_value": float(np.percentile(
                [ms for d, _, ms in mine if not g or d == g], q))}}]) for g in groups if mine]


def log_rows(rows):
    """Request-response logging table rows: (deployed model id, [instances], [predictions])."""
    return pa.table({
        "deployed_model_id": [d for d, _, _ in rows],
        "request_payload": [[json.dumps({"instances": i})] for _, i, _ in rows],
        "response_payload": [[json.dumps({"predictions": p})] for _, _, p in rows]})


@bound_to(bigquery.Client)
class LogTableClient(FakeClient):
    def __init__(self, table):
        super().__init__([])
        self.table = table

    def query(self, sql, job_config=None, location=None, job_id_prefix=None):
        self.calls.append(("query", sql, job_config, location, job_id_prefix))
        return FakeJob([], rows=SimpleNamespace(to_arrow=lambda bqstorage_client: self.table))


def vertex_endpoint(split=None):
    rec = Recorder()
    deployed = [deployed_model(OLD, dt.datetime.fromtimestamp(T0 - 86400, dt.timezone.utc), MODEL, "1"),
                deployed_model(NEW, dt.datetime.fromtimestamp(T0, dt.timezone.utc), MODEL, "2")]
    endpoint = FakeEndpoint(rec, split=split or {OLD: 80, NEW: 20}, deployed=deployed,
                            labels=previous_split_labels({OLD: 100}))
    return rec, endpoint, VertexAdapter("p", "us-central1", aiplatform=fake_aiplatform(rec, endpoints=[endpoint]))


def canary_on_vertex(requests, log_table, **kwargs):
    rec, endpoint, vertex = vertex_endpoint()
    monitoring = FakeCloudMonitoring(requests)
    bq = LogTableClient(log_table)
    source = VertexCanary("penguins", project="p", location="us-central1", request_logging_table="bq://p.logs.penguins",
                          vertex=vertex, monitoring=MonitoringAdapter("p", client=monitoring.client),
                          bigquery=BigQueryAdapter("p", "EU", client=bq, read_client=object()))
    clock = iter([T0 + 600.0] * 10)
    result = analyze_canary("penguins", source=source, window_seconds=0, clock=lambda: next(clock),
                            sleep=lambda s: None, **kwargs)
    return result, rec, endpoint, monitoring, bq


def traffic(old_n, new_n, new_errors=0, old_ms=20.0, new_ms=20.0):
    return ([(OLD, 200, old_ms)] * old_n + [(NEW, 200, new_ms)] * (new_n - new_errors)
            + [(NEW, 500, new_ms)] * new_errors)


def logged(old_classes, new_classes):
    return log_rows([(OLD, [{"island": "Biscoe", "id": f"o{i}"}], [{"classes": c}]) for i, c in enumerate(old_classes)]
                    + [(NEW, [{"island": "Biscoe", "id": f"n{i}"}], [{"classes": c}]) for i, c in enumerate(new_classes)])


def test_monitoring_requests_name_vertex_metrics_for_the_endpoint_and_its_deployed_models():
    monitoring = FakeCloudMonitoring(traffic(3, 2))
    adapter = MonitoringAdapter("p", client=monitoring.client)

    counts = adapter.responses("9", [OLD, NEW], T0, T0 + 600, alignment(T0, T0 + 600))
    p99 = adapter.latency("9", [NEW], 99, T0, T0 + 600, 600)

    request = monitoring.seen[0]
    assert request.name == "projects/p"
    assert request.filter == ('metric.type = "aiplatform.googleapis.com/prediction/online/response_count" '
                              'AND resource.type = "aiplatform.googleapis.com/Endpoint" '
                              'AND resource.labels.endpoint_id = "9" '
                              f'AND metric.labels.deployed_model_id = one_of("{OLD}", "{NEW}")')
    assert request.aggregation.alignment_period.seconds == 600
    assert request.aggregation.per_series_aligner == monitoring_v3.Aggregation.Aligner.ALIGN_DELTA
    assert request.aggregation.cross_series_reducer == monitoring_v3.Aggregation.Reducer.REDUCE_SUM
    assert list(request.aggregation.group_by_fields) == ["metric.label.deployed_model_id", "metric.label.response_code"]
    assert (request.interval.start_time.timestamp(), request.interval.end_time.timestamp()) == (T0, T0 + 600)
    assert sorted((p.deployed_model_id, p.response_code, p.value) for p in counts) == [(OLD, "200", 3.0),
                                                                                      (NEW, "200", 2.0)]
    latency = monitoring.seen[1]
    assert latency.filter.endswith('one_of("1002") AND metric.labels.latency_type = "total"')
    assert "prediction/online/prediction_latencies" in latency.filter
    assert latency.aggregation.cross_series_reducer == monitoring_v3.Aggregation.Reducer.REDUCE_PERCENTILE_99
    assert list(latency.aggregation.group_by_fields) == []
    assert p99 == [Point("", T0 + 600, 20.0)]


def test_alignment_is_never_below_cloud_monitorings_minute():
    assert alignment(T0, T0 + 10) == 60
    assert alignment(T0, T0 + 600, slices=20) == 60
    assert alignment(T0, T0 + 3601) == 3601


def test_a_vertex_canary_with_more_errors_is_rolled_back_and_its_version_labelled_rejected():
    result, rec, endpoint, monitoring, bq = canary_on_vertex(
        traffic(400, 100, new_errors=5), logged(["Adelie", "Gentoo"] * 50, ["Adelie", "Gentoo"] * 25))

    assert result.verdict == ROLLBACK
    assert "error_rate: canary 5/100 failed vs 0/400" in result.analysis.reason
    assert endpoint.traffic_split == {OLD: 100}  # the split deploy recorded before the canary
    assert ("add_version_aliases", ["champion"], "1") in rec.calls
    assert ("Model.update", f"{MODEL}@2", {"labels": {"kfkit-canary": "rejected"}}) in rec.calls
    assert result.split == {OLD: 100, NEW: 0}
    _, sql, config, location, _ = bq.calls[0]
    assert sql.startswith("SELECT deployed_model_id, request_payload, response_payload FROM `p.logs.penguins`")
    assert [p.name for p in config.query_parameters] == ["window_start", "window_end"]
    assert location == "EU"


def test_a_vertex_canary_that_serves_like_the_champion_is_promoted_and_the_split_it_replaced_kept():
    result, rec, endpoint, monitoring, bq = canary_on_vertex(
        traffic(400, 100), logged(["Adelie", "Gentoo"] * 200, ["Adelie", "Gentoo"] * 50))

    assert result.verdict == PROMOTE
    assert endpoint.traffic_split == {NEW: 100}
    assert endpoint.labels == previous_split_labels({OLD: 80, NEW: 20})  # `kfkit rollback` undoes it
    assert ("add_version_aliases", ["champion"], "2") in rec.calls
    assert ("Model.update", f"{MODEL}@2", {"labels": {"kfkit-canary": "promoted"}}) in rec.calls
    figures = result.analysis.canary
    assert (figures["requests"], figures["errors"], figures["latency_p99_ms"]) == (100, 0, 20.0)
    assert len(result.served[0].predictions) == 100 and len(result.served[1].predictions) == 400


def test_latency_is_judged_on_cloud_monitorings_percentiles():
    result, *_ = canary_on_vertex(traffic(400, 100, old_ms=20.0, new_ms=45.0),
                                  logged(["Adelie"] * 10, ["Adelie"] * 10), thresholds=Thresholds(min_requests=50))

    latency = next(c for c in result.analysis.criteria if c.name == "latency_p99_ms")
    assert (latency.canary, latency.baseline, latency.limit, latency.passed) == (45.0, 20.0, 30.0, False)
    assert result.verdict == ROLLBACK


def test_a_vertex_canary_whose_predictions_move_is_rolled_back_on_the_monitors_distance():
    # classes 50:50 (champion) against 90:10 (canary): TFDV's L-infinity distance 0.4 > 0.3
    result, *_ = canary_on_vertex(traffic(400, 100), logged(["Adelie", "Gentoo"] * 100,
                                                            ["Adelie"] * 90 + ["Gentoo"] * 10))

    distance = next(c for c in result.analysis.criteria if c.name == "prediction_distance")
    assert distance.canary == pytest.approx(0.4) and not distance.passed


def test_ground_truth_from_bigquery_joins_the_logged_instances_by_request_key():
    rec, endpoint, vertex = vertex_endpoint()
    truth = pa.table({"k": [f"n{i}" for i in range(100)] + [f"o{i}" for i in range(100)],
                      "y": ["Adelie"] * 200})
    logs = logged(["Adelie"] * 100, ["Gentoo"] * 50 + ["Adelie"] * 50)

    class Both(LogTableClient):
        def query(self, sql, job_config=None, location=None, job_id_prefix=None):
            self.calls.append(("query", sql, job_config, location, job_id_prefix))
            table = truth if "AS k" in sql else logs
            return FakeJob([], rows=SimpleNamespace(to_arrow=lambda bqstorage_client: table))

    source = VertexCanary("penguins", project="p", location="us-central1", request_logging_table="p.logs.penguins",
                          vertex=vertex, monitoring=MonitoringAdapter("p", client=FakeCloudMonitoring(
                              traffic(100, 100)).client),
                          bigquery=BigQueryAdapter("p", "US", client=Both(logs), read_client=object()))
    result = analyze_canary("penguins", source=source, window_seconds=0, clock=lambda: T0 + 600, act=False,
                            labels_table="p.truth.penguins", request_key="id", label_column="species",
                            thresholds=Thresholds(min_requests=100, max_prediction_distance=1.0))

    accuracy = next(c for c in result.analysis.criteria if c.name == "accuracy")
    assert (accuracy.canary, accuracy.baseline, accuracy.passed) == (0.5, 1.0, False)
    assert result.action == "none" and endpoint.traffic_split == {OLD: 80, NEW: 20}


@pytest.mark.parametrize("table", ["", "bq://p.logs", "p..t", "logs"])
def test_a_vertex_canary_needs_the_endpoints_logging_table(table):
    with pytest.raises(ConfigError, match="request_logging_table"):
        if table:
            logging_table_id(table)
        else:
            VertexCanary("penguins", project="p", location="us-central1", request_logging_table=table)


def test_kfkit_promote_on_vertex_moves_all_traffic_to_the_newest_deployed_model(capsys):
    from kfkit import cli

    rec, endpoint, vertex = vertex_endpoint()
    with mock.patch("kfkit.adapters.vertex.VertexAdapter", return_value=vertex):
        code = cli.main(["promote", "--endpoint", "penguins", "--backend", "vertex", "--project", "p"])

    assert code == 0 and endpoint.traffic_split == {NEW: 100}
    assert capsys.readouterr().out.strip() == f"endpoint penguins: traffic split now {{'{NEW}': 100}}"


def test_vertex_promote_refuses_a_deployed_model_the_endpoint_does_not_have():
    _, endpoint, vertex = vertex_endpoint()
    with pytest.raises(ConfigError, match="endpoint 'penguins' has no deployed model '77'"):
        vertex.promote("penguins", "77")
    assert endpoint.traffic_split == {OLD: 80, NEW: 20}


def test_the_training_pipeline_watches_a_vertex_canary_only_where_its_predictions_are_logged(tmp_path):
    import yaml
    from kfp import compiler

    from kfkit.pipelines.training import training_pipeline

    compiler.Compiler().compile(training_pipeline, str(tmp_path / "t.yaml"))
    spec = yaml.safe_load((tmp_path / "t.yaml").read_text())
    found = {}

    def walk(component, conditions):
        for name, task in spec["components"][component].get("dag", {}).get("tasks", {}).items():
            condition = task.get("triggerPolicy", {}).get("condition", "")
            ref = task["componentRef"]["name"]
            if ref.startswith("comp-condition"):
                walk(ref, conditions + [condition] if condition else conditions)
            elif name.startswith("analyze-canary"):
                found[name] = (conditions, task["inputs"]["parameters"])

    for task in spec["root"]["dag"]["tasks"].values():
        if task["componentRef"]["name"].startswith("comp-condition"):
            walk(task["componentRef"]["name"], [])

    assert sorted(found) == ["analyze-canary", "analyze-canary-2"]
    local, vertex = found["analyze-canary"][0], found["analyze-canary-2"][0]
    assert local[-1] == "inputs.parameter_values['pipelinechannel--backend'] == 'local'"
    assert vertex[-2:] == ["inputs.parameter_values['pipelinechannel--backend'] != 'local'",
                           "inputs.parameter_values['pipelinechannel--request_logging_table'] != ''"]
    assert "inputs.parameter_values['pipelinechannel--endpoint_backend'] != 'kserve'" in local
    given = found["analyze-canary-2"][1]
    assert given["location"]["componentInputParameter"] == "pipelinechannel--region"
    assert given["bigquery_location"]["componentInputParameter"] == "pipelinechannel--location"
