"""The wire tier for Cloud Monitoring and the canary on Vertex AI: MonitoringAdapter through the real
monitoring_v3.MetricServiceClient against tests/monitoring_api.py, and the whole canary analysis (figures,
promotion or rollback, champion alias, verdict label) through the real SDK against both fakes."""

from __future__ import annotations

import pytest

from tests.wire import LOCATION, PROJECT, adapter
from tests.wire import certificate, monitoring_api, vertex_api  # noqa: F401 - the fixtures, by name

# ruff: noqa: F811 - each test names the imported fixtures as its parameters

T0 = 1_700_000_000.0


def test_response_counts_and_latency_percentiles_come_back_per_deployed_model(monitoring_api):
    from kfkit.adapters.monitoring import MonitoringAdapter, Point

    monitoring_api.requests = ([("9", "1001", 200, 20.0, T0 + 100)] * 3 + [("9", "1002", 500, 80.0, T0 + 200)] * 2
                               + [("8", "1001", 200, 20.0, T0 + 100)])  # another endpoint's
    monitoring = MonitoringAdapter(PROJECT)

    counts = monitoring.responses("9", ["1001", "1002"], T0, T0 + 600, 600)
    p99 = monitoring.latency("9", ["1001", "1002"], 99, T0, T0 + 600, 600)

    assert sorted((p.deployed_model_id, p.response_code, p.value) for p in counts) == [("1001", "200", 3.0),
                                                                                      ("1002", "500", 2.0)]
    assert p99 == [Point("", T0 + 600, pytest.approx(80.0))]
    assert monitoring_api.seen[0].name == f"projects/{PROJECT}"


def test_an_alignment_under_a_minute_is_refused_as_cloud_monitoring_refuses_it(monitoring_api):
    from google.api_core import exceptions

    from kfkit.adapters.monitoring import MonitoringAdapter

    with pytest.raises(exceptions.InvalidArgument, match="at least 60s"):
        MonitoringAdapter(PROJECT).responses("9", ["1001"], T0, T0 + 30, 30)


def canary_setup(vertex_api, tmp_path):
    from kfkit.components.deploy.deploy import deploy_model
    from kfkit.components.register.register import register_model

    def release(task, blessed, percent):
        registered = register_model(f"gs://my-proj-models/{task}", model_name="penguins", backend="vertex",
                                    blessed=blessed, task_id=task, project=PROJECT, location=LOCATION)
        deploy_model(registered, endpoint_name="penguins", backend="vertex", traffic_percent=percent,
                     project=PROJECT, location=LOCATION, vertex=adapter(tmp_path))

    release("t1", True, 100)
    release("t2", False, 20)
    live = next(iter(vertex_api.endpoints.values()))
    old, new = live.deployed_models
    return live.name.rsplit("/", 1)[1], old.id, new.id, new.create_time.timestamp()


def run_canary(tmp_path, old, new, start, old_classes, new_classes):
    import json

    import pyarrow as pa

    from kfkit.adapters.bigquery import BigQueryAdapter
    from kfkit.components.canary.canary import analyze_canary
    from kfkit.components.canary.vertex import VertexCanary
    from tests.test_canary_vertex import LogTableClient

    rows = [(old, c) for c in old_classes] + [(new, c) for c in new_classes]
    logs = pa.table({"deployed_model_id": [d for d, _ in rows],
                     "request_payload": [[json.dumps({"instances": [{"island": "Biscoe"}]})] for _ in rows],
                     "response_payload": [[json.dumps({"predictions": [{"classes": c}]})] for _, c in rows]})
    source = VertexCanary("penguins", project=PROJECT, location=LOCATION,
                          request_logging_table=f"bq://{PROJECT}.logs.penguins", vertex=adapter(tmp_path),
                          bigquery=BigQueryAdapter(PROJECT, "EU", client=LogTableClient(logs), read_client=object()))
    return analyze_canary("penguins", source=source, window_seconds=0, clock=lambda: start + 600,
                          sleep=lambda s: None)


def version_labels(version):
    from google.cloud import aiplatform

    model = aiplatform.Model.list(filter='display_name="penguins"')[0]
    return dict(aiplatform.Model(model.resource_name, version=version).labels)


def test_a_canary_on_vertex_serving_like_the_champion_is_promoted_and_only_its_version_labelled(
        vertex_api, monitoring_api, tmp_path):
    from kfkit.adapters.vertex import previous_split_labels
    from kfkit.components.canary.analysis import PROMOTE

    endpoint_id, old, new, start = canary_setup(vertex_api, tmp_path)
    monitoring_api.requests = ([(endpoint_id, old, 200, 20.0, start + 300)] * 400
                               + [(endpoint_id, new, 200, 21.0, start + 300)] * 100)

    result = run_canary(tmp_path, old, new, start, ["Adelie", "Gentoo"] * 200, ["Adelie", "Gentoo"] * 50)

    assert result.verdict == PROMOTE, result.analysis.reason
    live = next(iter(vertex_api.endpoints.values()))
    assert dict(live.traffic_split) == {new: 100}
    assert {k: v for k, v in live.labels.items() if k.startswith("kfkit-prev-")} == \
        previous_split_labels({old: 80, new: 20})
    assert (result.analysis.canary["requests"], result.analysis.canary["errors"]) == (100, 0)
    assert "champion" in vertex_api.models["1"]["versions"]["2"].version_aliases
    assert version_labels("2")["kfkit-canary"] == "promoted" and "kfkit-canary" not in version_labels("1")


def test_a_canary_on_vertex_with_more_errors_is_rolled_back_to_the_split_deploy_recorded(
        vertex_api, monitoring_api, tmp_path):
    from kfkit.components.canary.analysis import ROLLBACK

    endpoint_id, old, new, start = canary_setup(vertex_api, tmp_path)
    monitoring_api.requests = ([(endpoint_id, old, 200, 20.0, start + 300)] * 400
                               + [(endpoint_id, new, 200, 20.0, start + 300)] * 90
                               + [(endpoint_id, new, 500, 20.0, start + 300)] * 10)

    result = run_canary(tmp_path, old, new, start, ["Adelie"] * 400, ["Adelie"] * 90)

    assert result.verdict == ROLLBACK
    assert "error_rate: canary 10/100 failed" in result.analysis.reason
    assert {k: v for k, v in next(iter(vertex_api.endpoints.values())).traffic_split.items() if v} == {old: 100}
    assert version_labels("2")["kfkit-canary"] == "rejected" and "kfkit-canary" not in version_labels("1")


def test_kfkit_canary_status_on_vertex_shows_cloud_monitorings_figures(vertex_api, monitoring_api, tmp_path,
                                                                       monkeypatch, capsys):
    import json
    import time

    import pyarrow as pa

    from kfkit import cli
    from kfkit.adapters import bigquery
    from tests.test_canary_vertex import LogTableClient

    endpoint_id, old, new, start = canary_setup(vertex_api, tmp_path)
    during = start + (time.time() - start) / 2  # between the canary's deployment and now
    monitoring_api.requests = ([(endpoint_id, old, 200, 20.0, during)] * 8 + [(endpoint_id, new, 200, 30.0, during)]
                               + [(endpoint_id, new, 503, 30.0, during)])
    logs = pa.table({"deployed_model_id": [old], "request_payload": [[json.dumps({"instances": [{}]})]],
                     "response_payload": [[json.dumps({"predictions": [{"classes": "Adelie"}]})]]})
    real = bigquery.BigQueryAdapter
    # the request-response logging table is BigQuery's, outside this tier
    monkeypatch.setattr(bigquery, "BigQueryAdapter", lambda project, location, **kwargs: real(
        project, location, client=LogTableClient(logs), read_client=object()))

    code = cli.main(["canary", "status", "--endpoint", "penguins", "--backend", "vertex", "--project", PROJECT,
                     "--region", LOCATION, "--request-logging-table", f"bq://{PROJECT}.logs.penguins",
                     "--min-requests", "1"])

    out = capsys.readouterr().out
    assert code == 0, out
    assert f"canary {new} (version 2, 20%) against {old}" in out
    assert "canary          2 requests      1 errors (50.00%)" in out
    assert "baseline        8 requests      0 errors (0.00%)" in out
