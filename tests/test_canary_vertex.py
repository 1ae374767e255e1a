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
OLD, NEW = "1001", "1002"  # deployed model ids: version 1 (the champion), version 3 (the canary)


class FakeCloudMonitoring:
    """Answers ListTimeSeries from per-request records as Cloud Monitoring aggregates them: alignment
    periods end at the interval's end; response counts are summed by the group_by labels, latency
    percentiles taken over the merged samples of a period. Only the endpoint whose id it is given."""

    def __init__(self, requests, endpoint_id="9"):
        # [(deployed model id, HTTP status, latency ms, time)]; time defaults to mid-window
        self.requests = [r if len(r) == 4 else (*r, T0 + 300.0) for r in requests]
        self.endpoint_id = endpoint_id
        self.client = mock.create_autospec(monitoring_v3.MetricServiceClient, instance=True, spec_set=True)
        self.client.list_time_series.side_effect = self.list_time_series
        self.seen = []

    def list_time_series(self, request):
        self.seen.append(request)
        if f'resource.labels.endpoint_id = "{self.endpoint_id}"' not in request.filter:
            return []
        ids = {i.strip('" ') for i in request.filter.split("one_of(")[1].split(")")[0].split(",")}
        start, end = request.interval.start_time.timestamp(), request.interval.end_time.timestamp()
        period = request.aggregation.alignment_period.seconds
        by_model = "metric.label.deployed_model_id" in request.aggregation.group_by_fields
        groups: dict = {}
        for deployed, status, ms, t in self.requests:
            if deployed not in ids or not start <= t < end:
                continue
            period_end = end - period * int((end - t) // period)
            if "response_count" in request.filter:
                key = (deployed, str(status))
            else:
                key = (deployed if by_model else "", "")
            groups.setdefault(key, {}).setdefault(period_end, []).append(ms)
        series = []
        for (deployed, code), points in sorted(groups.items()):
            labels = {k: v for k, v in (("deployed_model_id", deployed), ("response_code", code)) if v}
            if "response_count" in request.filter:
                values = [{"int64_value": len(ms)} for ms in points.values()]
            else:
                q = {"REDUCE_PERCENTILE_50": 50, "REDUCE_PERCENTILE_99": 99}[
                    request.aggregation.cross_series_reducer.name]
                values = [{"double_value": float(np.percentile(ms, q))} for ms in points.values()]
            series.append(monitoring_v3.TimeSeries(metric={"labels": labels}, points=[
                {"interval": {"end_time": {"seconds": int(e), "nanos": int(round((e % 1) * 1e9))}}, "value": v}
                for e, v in zip(points, values)]))
        return series


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
                deployed_model(NEW, dt.datetime.fromtimestamp(T0, dt.timezone.utc), MODEL, "3")]
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
        traffic(400, 100, new_errors=10), logged(["Adelie", "Gentoo"] * 50, ["Adelie", "Gentoo"] * 25))

    assert result.verdict == ROLLBACK
    assert "error_rate: canary 10/100 failed vs 0/400" in result.analysis.reason
    assert endpoint.traffic_split == {OLD: 100}  # the split deploy recorded before the canary
    assert ("add_version_aliases", ["champion"], "1") in rec.calls
    # a version-scope update (the name carries @3): the label lands on that version only
    assert ("update_model", f"{MODEL}@3", {"kfkit-canary": "rejected"}, ["labels"]) in rec.calls
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
    assert ("add_version_aliases", ["champion"], "3") in rec.calls
    assert ("update_model", f"{MODEL}@3", {"kfkit-canary": "promoted"}, ["labels"]) in rec.calls
    figures = result.analysis.canary
    assert (figures["requests"], figures["errors"], figures["latency_p99_ms"]) == (100, 0, 20.0)
    assert len(result.served[0].predictions) == 100 and len(result.served[1].predictions) == 400


def test_vertex_figures_over_the_window_come_from_cloud_monitoring_in_twenty_slices():
    end = T0 + 600.0 + 1e-6  # the window closes just after the clock's reading
    requests = ([(OLD, 200, 20.0, T0 + 300.0)] * 400 + [(NEW, 200, 20.0, T0 + 100.0)] * 95
                + [(NEW, 500, 80.0, T0 + 570.0)] * 3 + [(NEW, 503, 80.0, T0 + 570.0)] * 2)
    idle = log_rows([("1000", [{"island": "Dream"}], [{"classes": "Adelie"}])])  # a version with no traffic
    logs = pa.concat_tables([idle, logged(["Adelie"] * 400, ["Adelie"] * 100)])

    result, rec, endpoint, monitoring, bq = canary_on_vertex(requests, logs)

    figures = result.analysis.canary
    # p99 of 95 x 20 ms and 5 x 80 ms: position 0.99 * 99 = 98.01 of the sorted samples, both 80 ms
    assert (figures["requests"], figures["errors"], figures["latency_p50_ms"], figures["latency_p99_ms"]) == (
        100, 5, 20.0, 80.0)
    assert result.verdict == ROLLBACK
    # the interval asked for is whole seconds, [T0, T0 + 601): 60 s periods end at T0 + 601, 541, ...;
    # slices are 30 s wide from T0, and a period's point lands in the slice just before its end:
    # T0 + 100 -> period ending T0 + 121 -> slice 4; T0 + 570 -> T0 + 601 -> slice 19; T0 + 300 -> 301 -> 10
    timeline = result.timeline
    assert timeline[NEW][4] == [95, 0, 20.0] and timeline[NEW][19] == [5, 5, 80.0]
    assert timeline[OLD][10] == [400, 0, 20.0]
    assert sum(slot[0] for slot in timeline[NEW]) == 100 and sum(slot[0] for slot in timeline[OLD]) == 400
    periods = sorted({r.aggregation.alignment_period.seconds for r in monitoring.seen})
    assert periods == [60, 601]  # 20 slices of 30 s ask for Cloud Monitoring's minimum; the window whole
    assert all(r.view == monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL for r in monitoring.seen)
    _, _, config, _, _ = bq.calls[0]
    assert [p.value for p in config.query_parameters] == [dt.datetime.fromtimestamp(T0, dt.timezone.utc),
                                                         dt.datetime.fromtimestamp(end, dt.timezone.utc)]
    assert len(result.served[0].predictions) == 100 and len(result.served[1].predictions) == 400
    lookups = {c[1] for c in rec.calls if c[0] == "Endpoint.list"}
    assert lookups == {'display_name="penguins"'}


def test_too_little_vertex_traffic_is_inconclusive_naming_each_side():
    result, *_ = canary_on_vertex(traffic(400, 10), logged(["Adelie"] * 4, ["Adelie"] * 4))

    assert result.verdict == "inconclusive" and result.action == "kept the split (inconclusive)"
    assert result.analysis.reason == f"too little traffic to judge: canary {NEW} 10 requests (min_requests=100)"


def test_without_adapters_given_the_vertex_canary_builds_them_for_its_project_and_regions():
    with mock.patch("kfkit.adapters.vertex.VertexAdapter") as vertex, \
            mock.patch("kfkit.adapters.monitoring.MonitoringAdapter") as monitoring, \
            mock.patch("kfkit.adapters.bigquery.BigQueryAdapter") as bigquery:
        VertexCanary("penguins", project="p", location="europe-west4", request_logging_table="bq://p.logs.t")
        VertexCanary("penguins", project="p", location="europe-west4", request_logging_table="bq://p.logs.t",
                     bigquery_location="EU")

    assert vertex.call_args_list == [mock.call("p", "europe-west4")] * 2
    assert monitoring.call_args_list == [mock.call("p")] * 2
    assert bigquery.call_args_list == [mock.call("p", "US"), mock.call("p", "EU")]


def test_monitoring_needs_a_project_and_builds_its_client_when_none_is_given():
    with pytest.raises(ConfigError) as refused:
        MonitoringAdapter("")
    assert str(refused.value) == "project is required to read a Vertex AI endpoint's metrics from Cloud Monitoring"
    with mock.patch.object(monitoring_v3, "MetricServiceClient") as client:
        assert MonitoringAdapter("p").client is client.return_value


def test_latency_per_deployed_model_groups_by_it_and_keeps_the_period_asked_for():
    monitoring = FakeCloudMonitoring(traffic(3, 2, old_ms=10.0, new_ms=30.0))
    adapter = MonitoringAdapter("p", client=monitoring.client)

    points = adapter.latency("9", [OLD, NEW], 50, T0, T0 + 600, 120, per_model=True)

    request = monitoring.seen[0]
    assert list(request.aggregation.group_by_fields) == ["metric.label.deployed_model_id"]
    assert request.aggregation.alignment_period.seconds == 120
    assert request.aggregation.cross_series_reducer == monitoring_v3.Aggregation.Reducer.REDUCE_PERCENTILE_50
    assert sorted((p.deployed_model_id, p.value) for p in points) == [(OLD, 10.0), (NEW, 30.0)]
    assert adapter.latency("8", [OLD], 50, T0, T0 + 600, 120) == []  # another endpoint: nothing


def test_latency_is_judged_on_cloud_monitorings_percentiles():
    result, *_ = canary_on_vertex(traffic(400, 100, old_ms=20.0, new_ms=45.0),
                                  logged(["Adelie"] * 10, ["Adelie"] * 10), thresholds=Thresholds(min_requests=50))

    latency = next(c for c in result.analysis.criteria if c.name == "latency_p99_ms")
    assert (latency.canary, latency.baseline, latency.limit, latency.passed) == (45.0, 20.0, 24.0, False)
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
    logs = pa.concat_tables([
        logged(["Adelie"] * 100, ["Gentoo"] * 50 + ["Adelie"] * 50),
        log_rows([(NEW, [{"id": "n0"}, {"id": "n1"}], [{"classes": "Gentoo"}]),  # instances and predictions
                  (NEW, [["n2"]], [{"classes": "Gentoo"}]),  # differ in number; an instance not an object;
                  (NEW, [{"id": "zz"}], [{"classes": "Gentoo"}])])])  # a key with no label

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


def test_the_training_pipeline_watches_a_canary_only_where_its_figures_can_be_read(tmp_path):
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

    assert sorted(found) == ["analyze-canary", "analyze-canary-2", "analyze-canary-3"]
    local, vertex, kserve = (found[f"analyze-canary{n}"][0] for n in ("", "-2", "-3"))
    assert local[-1] == "inputs.parameter_values['pipelinechannel--backend'] == 'local'"
    assert vertex[-2:] == ["inputs.parameter_values['pipelinechannel--backend'] != 'local'",
                           "inputs.parameter_values['pipelinechannel--request_logging_table'] != ''"]
    assert "inputs.parameter_values['pipelinechannel--endpoint_backend'] != 'kserve'" in local
    assert kserve[-3:] == ["inputs.parameter_values['pipelinechannel--endpoint_backend'] == 'kserve'",
                           "inputs.parameter_values['pipelinechannel--request_logger_url'] != ''",
                           "inputs.parameter_values['pipelinechannel--prometheus_url'] != ''"]
    assert all("traffic_percent" in c for c in (local[0], vertex[0], kserve[0]))
    assert found["analyze-canary-3"][1]["namespace"]["componentInputParameter"] == "pipelinechannel--namespace"
    given = found["analyze-canary-2"][1]
    assert given["location"]["componentInputParameter"] == "pipelinechannel--region"
    assert given["bigquery_location"]["componentInputParameter"] == "pipelinechannel--location"


def test_a_series_without_labels_reads_as_no_deployed_model_and_no_status():
    client = mock.create_autospec(monitoring_v3.MetricServiceClient, instance=True, spec_set=True)
    client.list_time_series.return_value = [monitoring_v3.TimeSeries(points=[
        {"interval": {"end_time": {"seconds": int(T0)}}, "value": {"int64_value": 7}}])]

    [point] = MonitoringAdapter("p", client=client).responses("9", [OLD], T0 - 60, T0, 60)

    assert point == Point("", T0, 7.0, "")


def test_kfkit_canary_status_on_vertex_prints_the_figures_so_far_without_acting(capsys):
    from kfkit import cli

    rec, endpoint, vertex = vertex_endpoint()
    monitoring = MonitoringAdapter("p", client=FakeCloudMonitoring(
        [(r[0], r[1], r[2], T0 + 1.0) for r in traffic(400, 100, new_errors=10)]).client)
    bigquery = BigQueryAdapter("p", "US", client=LogTableClient(logged(["Adelie"] * 40, ["Adelie"] * 10)),
                               read_client=object())
    with mock.patch("kfkit.adapters.vertex.VertexAdapter", return_value=vertex) as made_vertex, \
            mock.patch("kfkit.adapters.monitoring.MonitoringAdapter", return_value=monitoring), \
            mock.patch("kfkit.adapters.bigquery.BigQueryAdapter", return_value=bigquery) as made_bigquery, \
            mock.patch("time.time", return_value=T0 + 60.0):
        code = cli.main(["canary", "status", "--endpoint", "penguins", "--backend", "vertex", "--project", "p",
                         "--region", "asia-east1", "--request-logging-table", "bq://p.logs.penguins",
                         "--bigquery-location", "asia-east1"])

    out = capsys.readouterr().out
    assert code == 0
    assert made_vertex.call_args == mock.call("p", "asia-east1")
    assert made_bigquery.call_args == mock.call("p", "asia-east1")
    assert f"endpoint penguins: canary {NEW} (version 3, 20%) against {OLD}" in out
    assert "  canary        100 requests     10 errors (10.00%)  p50 20.0 ms  p99 20.0 ms" in out
    assert "verdict if judged now: rollback" in out
    assert endpoint.traffic_split == {OLD: 80, NEW: 20}  # nothing moved
