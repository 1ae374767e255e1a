"""The canary analysis on a KServe InferenceService: the cluster's own figures, KServe's own moves.

The InferenceService goes through the in-memory API server of test_kserve (the Kubernetes client's
CustomObjectsApi by mock.create_autospec, KServe reconciling traffic as its canary rollout
documents, every object checked against KServe's published schema). Requests, errors and latency
come from a real Prometheus holding Knative's queue-proxy series (tests/prometheus_server.py);
predictions from records in the format kfkit's log sink writes (tests/test_log_sink.py covers
the sink itself); the registry is MlflowRegistry's signature (mock.create_autospec).
"""

import json
import time
from unittest import mock

import pytest

from kfkit.adapters import kserve
from kfkit.adapters.mlflow_registry import MlflowRegistry
from kfkit.adapters.prometheus import PrometheusAdapter
from kfkit.components.canary.analysis import PROMOTE, ROLLBACK, Thresholds
from kfkit.components.canary.canary import analyze_canary
from kfkit.components.canary.kserve import KServeCanary
from kfkit.errors import ConfigError
from tests import prometheus_server
from tests.test_canary import Clock
from tests.kserve_schema import Schema
from tests.test_kserve import NAMESPACE, Cluster, adapter

T0 = (int(time.time()) // 60) * 60 - 7200
SINK = "http://kfkit-log-sink.kubeflow-user-example-com.svc:8080"


@pytest.fixture(scope="module")
def schema():
    return Schema()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    series = prometheus_server.Series()
    # penguins: a canary as good as its baseline; taxi: a canary failing 1 request in 11
    series.revision("penguins-predictor-00002", T0, T0 + 600, 15, ok_per_s=1.0, latency_bucket_ms=100)
    series.revision("penguins-predictor-00001", T0, T0 + 600, 15, ok_per_s=4.0, latency_bucket_ms=100)
    series.revision("taxi-predictor-00002", T0, T0 + 600, 15, ok_per_s=1.0, errors_per_s=0.1, latency_bucket_ms=100)
    series.revision("taxi-predictor-00001", T0, T0 + 600, 15, ok_per_s=4.0, latency_bucket_ms=100)
    # flaky: a canary failing with both 4xx and 5xx answers
    series.revision("flaky-predictor-00002", T0, T0 + 600, 15, ok_per_s=1.0, client_errors_per_s=0.05,
                    errors_per_s=0.05)
    series.revision("flaky-predictor-00001", T0, T0 + 600, 15, ok_per_s=4.0)
    url, process = prometheus_server.start(series, tmp_path_factory.mktemp("prometheus"))
    yield url
    process.terminate()
    process.wait()


def sink_records(per_version: dict[str, int]):
    """What the log sink hands back: answered requests of each version, a class each, inside the window."""
    rows = []
    for version, n in per_version.items():
        for i in range(n):
            rows.append({"timestamp": T0 + 1 + i * 0.1, "deployed_model_id": f"penguins-v{version}",
                         "model_version": version, "status": 200, "instances": [{"id": f"{version}-{i}"}],
                         "predictions": [{"classes": ("Adelie", "Gentoo", "Chinstrap")[i % 3]}]})
    calls = []

    def read(url, service, start, end):
        calls.append((url, service, start, end))
        return [r for r in rows if start <= r["timestamp"] < end]

    read.calls = calls
    return read


def canary_on(name, prometheus_url, read, cluster=None):
    """An InferenceService with version 2 deployed as a 20% canary over version 1, its window starting at T0."""
    cluster = cluster or Cluster()
    kserve_ = adapter(cluster)
    kserve_.deploy(name, f"s3://m/{name}/1", model_name=name, model_version="1", request_logger_url=SINK)
    kserve_.deploy(name, f"s3://m/{name}/2", model_name=name, model_version="2", traffic_percent=20,
                   request_logger_url=SINK)
    cluster.objects[name]["metadata"]["annotations"][kserve.DEPLOYED_AT] = str(T0)  # as if deployed then
    registry = mock.create_autospec(MlflowRegistry, instance=True)
    source = KServeCanary(name, prometheus_url=prometheus_url, request_logger_url=SINK, kserve=kserve_,
                          prometheus=PrometheusAdapter(prometheus_url), registry=registry, read_records=read)
    return source, cluster, registry


def use_kubeconfig(tmp_path, monkeypatch, server):
    """KUBECONFIG naming one cluster at `server` with a token, as its current context."""
    (tmp_path / "kubeconfig").write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": server}}],
        "users": [{"name": "t", "user": {"token": "t"}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))


def as_read(cluster, edit):
    """The cluster answers reads with `edit` applied to what KServe reports."""
    reconciled = cluster.get

    def get(*args, **kwargs):
        service = reconciled(*args, **kwargs)
        edit(service)
        return service

    cluster.api.get_namespaced_custom_object.side_effect = get


def test_a_good_kserve_canary_is_promoted_by_kserves_own_promotion(prometheus, schema):
    read = sink_records({"1": 300, "2": 300})
    source, cluster, registry = canary_on("penguins", prometheus, read)
    clock = Clock(T0 + 1)

    result = analyze_canary("penguins", window_seconds=599, clock=clock, sleep=clock.sleep, source=source,
                            thresholds=Thresholds(min_requests=100))

    assert result.verdict == PROMOTE, result.analysis.reason
    assert (result.analysis.canary["requests"], result.analysis.baseline["requests"]) == (600, 2400)
    assert result.analysis.canary["latency_p99_ms"] == pytest.approx(99.5)
    call, sent = cluster.sent[-1]
    assert call == "replace" and "canaryTrafficPercent" not in sent["spec"]["predictor"]
    assert schema.problems(sent) == []
    registry.set_alias.assert_called_once_with("penguins", "2", "champion")
    registry.tag_version.assert_called_once_with("penguins", "2", "kfkit.canary", "promoted")
    assert read.calls[-1][:2] == (SINK, "penguins") and read.calls[-1][2] == T0
    assert result.action == "promoted penguins-predictor-00002 to 100%; champion is version 2"


def test_a_failing_kserve_canary_is_rolled_back_and_rejected(prometheus):
    source, cluster, registry = canary_on("taxi", prometheus, sink_records({"1": 300, "2": 300}))
    clock = Clock(T0 + 1)

    result = analyze_canary("taxi", window_seconds=599, clock=clock, sleep=clock.sleep, source=source,
                            thresholds=Thresholds(min_requests=100))

    assert result.verdict == ROLLBACK
    assert result.analysis.canary["errors"] == 60 and "error_rate" in result.analysis.reason
    assert cluster.sent[-1][1]["spec"]["predictor"]["canaryTrafficPercent"] == 0
    registry.set_alias.assert_called_once_with("taxi", "1", "champion")
    registry.tag_version.assert_called_once_with("taxi", "2", "kfkit.canary", "rejected")


def test_predictions_that_differ_from_the_baselines_roll_the_canary_back(prometheus):
    rows = sink_records({"1": 300})

    def read(url, service, start, end):  # the canary answers one class only
        return list(rows(url, service, start, end)) + [
            {"timestamp": T0 + 5, "model_version": "2", "instances": [{}] * 300,
             "predictions": [{"classes": "Adelie"}] * 300}]

    source, cluster, registry = canary_on("penguins", prometheus, read)
    clock = Clock(T0 + 1)

    result = analyze_canary("penguins", window_seconds=599, clock=clock, sleep=clock.sleep, source=source,
                            thresholds=Thresholds(min_requests=100))

    assert result.verdict == ROLLBACK and "prediction_distance" in result.analysis.reason


def test_answered_requests_that_prometheus_does_not_count_are_refused_not_judged_on_zero(prometheus):
    source, _, _ = canary_on("absent", prometheus, sink_records({"1": 5, "2": 5}))
    canary, baseline = {"id": "absent-predictor-00002", "version": "2"}, [{"id": "absent-predictor-00001",
                                                                           "version": "1"}]

    with pytest.raises(ConfigError) as raised:
        source.served(canary, baseline, T0, T0 + 600, None, "")

    assert str(raised.value) == (
        f"the log sink has 10 answered requests of absent in the window but Prometheus at {prometheus} has no "
        f"revision_request_count series for absent-predictor-00002, absent-predictor-00001 in namespace {NAMESPACE}: "
        "does it scrape Knative's queue-proxy, under the names Knative Serving documents up to 1.18 (1.19 moved "
        "them to OpenTelemetry's)?")


def test_a_window_without_traffic_anywhere_is_too_little_traffic_not_an_error(prometheus):
    source, _, _ = canary_on("absent", prometheus, sink_records({}))

    canary_served, base, _ = source.served({"id": "absent-predictor-00002", "version": "2"},
                                           [{"id": "absent-predictor-00001", "version": "1"}], T0, T0 + 600, None, "")

    assert (canary_served.requests, base.requests) == (0, 0)


def test_the_state_names_kserves_revisions_with_the_versions_they_serve(prometheus):
    source, _, _ = canary_on("penguins", prometheus, sink_records({}))

    state = source.state()

    assert state == {"endpoint": "penguins", "deployed_models": [
        {"id": "penguins-predictor-00002", "model": "penguins", "version": "2", "traffic": 20, "deployed_at": T0},
        {"id": "penguins-predictor-00001", "model": "penguins", "version": "1", "traffic": 80, "deployed_at": 0.0}]}


def test_a_service_kserve_has_not_reported_on_yet_serves_nothing(prometheus):
    source, cluster, _ = canary_on("penguins", prometheus, sink_records({}))
    as_read(cluster, lambda service: service.pop("status"))

    assert source.state() == {"endpoint": "penguins", "deployed_models": []}


@pytest.mark.parametrize("deployed_at", [None, "yesterday"])
def test_a_missing_or_unreadable_deploy_time_reads_as_the_epoch_and_a_share_kserve_left_out_as_zero(
        prometheus, deployed_at):
    source, cluster, _ = canary_on("penguins", prometheus, sink_records({}))

    def edit(service):
        if deployed_at is None:
            del service["metadata"]["annotations"][kserve.DEPLOYED_AT]
        else:
            service["metadata"]["annotations"][kserve.DEPLOYED_AT] = deployed_at
        del service["status"]["components"]["predictor"]["traffic"][1]["percent"]
        del service["spec"]["predictor"]["labels"][kserve.MODEL_LABEL]  # then the model has the service's name

    as_read(cluster, edit)

    assert source.state()["deployed_models"] == [
        {"id": "penguins-predictor-00002", "model": "penguins", "version": "2", "traffic": 20, "deployed_at": 0.0},
        {"id": "penguins-predictor-00001", "model": "penguins", "version": "1", "traffic": 0, "deployed_at": 0.0}]


def test_4xx_and_5xx_answers_both_count_as_errors_in_the_window_and_the_timeline(prometheus):
    source, _, _ = canary_on("flaky", prometheus, sink_records({}))
    canary = {"id": "flaky-predictor-00002", "version": "2"}

    canary_served, base, timeline = source.served(canary, [{"id": "flaky-predictor-00001", "version": "1"}],
                                                  T0, T0 + 600, None, "")

    assert (canary_served.requests, canary_served.errors, base.errors) == (660, 60, 0)
    assert [s[:2] for s in timeline["flaky-predictor-00002"][1::2]] == [[66, 6]] * 10


def test_each_side_is_named_by_the_revisions_it_stands_for(prometheus):
    source, _, _ = canary_on("penguins", prometheus, sink_records({}))

    canary_served, base, _ = source.served(
        {"id": "penguins-predictor-00003", "version": "3"},
        [{"id": "penguins-predictor-00002", "version": "2"}, {"id": "penguins-predictor-00001", "version": "1"}],
        T0, T0 + 600, None, "")

    assert canary_served.name == "canary penguins-predictor-00003"
    assert base.name == "baseline penguins-predictor-00002, penguins-predictor-00001"
    assert base.requests == 3000  # both baseline revisions' requests


def test_ground_truth_from_the_warehouse_joins_the_sinks_instances_by_request_key(prometheus, tmp_path):
    import pyarrow as pa

    from kfkit.warehouse.local import LocalWarehouse

    rows = sink_records({"1": 300, "2": 300})
    labels = {f"1-{i}": ("Adelie", "Gentoo", "Chinstrap")[i % 3] for i in range(300)}  # version 1 always right
    labels.update({f"2-{i}": "Adelie" for i in range(300)})  # version 2 right one time in three
    LocalWarehouse(tmp_path).write_table("truth.penguins", pa.table({"id": list(labels), "species": list(labels.values())}))

    def read(url, service, start, end):  # first, a version neither side serves: left out
        return [{"timestamp": T0 + 1, "model_version": "7", "instances": [{"id": "2-0"}],
                 "predictions": [{"classes": "Gentoo"}]}, *rows(url, service, start, end)]

    source, _, _ = canary_on("penguins", prometheus, read)
    source.local_root = str(tmp_path)
    result = analyze_canary("penguins", window_seconds=0, clock=lambda: T0 + 600, act=False, source=source,
                            labels_table="truth.penguins", request_key="id", label_column="species",
                            thresholds=Thresholds(min_requests=100))

    accuracy = next(c for c in result.analysis.criteria if c.name == "accuracy")
    assert (accuracy.canary, accuracy.baseline, accuracy.passed) == (pytest.approx(1 / 3), 1.0, False)
    assert (result.analysis.canary["labelled"], result.analysis.baseline["labelled"]) == (300, 300)


def test_the_timeline_has_each_revisions_requests_errors_and_p99_per_slice(prometheus):
    source, _, _ = canary_on("taxi", prometheus, sink_records({}))

    timeline = source._timeline(["taxi-predictor-00002", "taxi-predictor-00001"], T0, T0 + 600)

    canary = timeline["taxi-predictor-00002"]
    # one point a minute (30 s slices): each minute's requests land in the slice its range ends in
    assert [s[0] for s in canary[1::2]] == [66] * 10 and [s[0] for s in canary[0::2]] == [0] * 10
    assert [s[1] for s in canary[1::2]] == [6] * 10
    assert canary[1][2] == pytest.approx(99.5) and [s[2] for s in canary[0::2]] == [0.0] * 10


def test_in_minute_wide_slices_the_first_minute_lands_in_the_first_slice(prometheus):
    source, _, _ = canary_on("taxi", prometheus, sink_records({}))

    timeline = source._timeline(["taxi-predictor-00002"], T0, T0 + 1200)

    assert [s[0] for s in timeline["taxi-predictor-00002"][:10]] == [66] * 10


def test_a_service_deployed_before_kfkit_wrote_the_previous_version_is_refused_naming_it(prometheus):
    source, cluster, _ = canary_on("penguins", prometheus, sink_records({}))
    del cluster.objects["penguins"]["metadata"]["annotations"][kserve.PREVIOUS_VERSION]

    with pytest.raises(ConfigError, match="which registered version revision penguins-predictor-00001 serves is "
                                          "unknown"):
        source.state()


@pytest.mark.parametrize("missing, message", [
    ("prometheus_url", "prometheus_url is empty: a canary on KServe is judged on the request counts and latencies "
                       "Knative's queue-proxy exports to the cluster's Prometheus"),
    ("request_logger_url", "request_logger_url is empty: a canary on KServe is judged on the predictions KServe's "
                           "inference logger posts to a kfkit log-sink (deploy's request_logger_url)")])
def test_a_kserve_canary_needs_prometheus_and_the_log_sink(missing, message):
    given = {"prometheus_url": "http://prometheus.monitoring:9090", "request_logger_url": SINK, missing: ""}

    with pytest.raises(ConfigError) as raised:
        KServeCanary("penguins", **given)

    assert str(raised.value) == message


def test_without_adapters_given_the_kserve_canary_builds_them_for_its_namespace_and_root(tmp_path, monkeypatch):
    from kfkit.serving import log_sink

    use_kubeconfig(tmp_path, monkeypatch, "http://127.0.0.1:9")  # read when the client is built; never contacted
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setattr(kserve, "SERVICE_ACCOUNT_NAMESPACE", tmp_path / "absent")

    source = KServeCanary("penguins", namespace="team-a", prometheus_url="http://prometheus.monitoring:9090/",
                          request_logger_url=SINK, local_root=str(tmp_path / "root"))
    elsewhere = KServeCanary("penguins", prometheus_url="http://prometheus.monitoring:9090", request_logger_url=SINK)

    assert (source.kserve.namespace, elsewhere.kserve.namespace) == ("team-a", "default")
    assert source.prometheus.url == "http://prometheus.monitoring:9090"
    assert source.read_records is log_sink.read_records and source.logger_url == SINK
    assert source.registry.root == tmp_path / "root"


def test_a_missing_inference_service_is_refused_naming_it(prometheus):
    source = KServeCanary("absent", prometheus_url=prometheus, request_logger_url=SINK,
                          kserve=adapter(Cluster()), registry=mock.create_autospec(MlflowRegistry, instance=True))
    with pytest.raises(ConfigError, match="no InferenceService 'absent' in namespace"):
        source.state()


def test_deploy_with_a_request_logger_points_kserves_logger_at_the_sink_with_kfkits_annotations(schema):
    cluster = Cluster()
    kserve_ = adapter(cluster)
    kserve_.deploy("penguins", "s3://m/penguins/1", model_name="penguins", model_version="1", request_logger_url=SINK)

    kserve_.deploy("penguins", "s3://m/penguins/2", model_name="penguins", model_version="2", traffic_percent=20,
                   request_logger_url=SINK)

    (_, created), (_, replaced) = cluster.sent
    assert replaced["spec"]["predictor"]["logger"] == {
        "mode": "all", "url": SINK, "metadataAnnotations": ["kfkit.io/model", "kfkit.io/model-version"]}
    assert replaced["spec"]["predictor"]["annotations"] == {"kfkit.io/model": "penguins", "kfkit.io/model-version": "2"}
    assert replaced["metadata"]["annotations"][kserve.PREVIOUS_VERSION] == "1"
    assert abs(float(replaced["metadata"]["annotations"][kserve.DEPLOYED_AT]) - time.time()) < 60
    assert "logger" in created["spec"]["predictor"] and schema.problems(created) == []
    assert schema.problems(replaced) == []


def test_deploy_without_a_request_logger_sends_no_logger_and_refuses_an_address_that_is_not_http():
    assert "logger" not in kserve.inference_service("p", NAMESPACE, "s3://m/p/1", model_name="p",
                                                    model_version="1")["spec"]["predictor"]
    with pytest.raises(ConfigError, match="request_logger_url must be the http"):
        kserve.inference_service("p", NAMESPACE, "s3://m/p/1", model_name="p", model_version="1",
                                 request_logger_url="kfkit-log-sink:8080")


def test_kfkit_canary_status_on_kserve_reads_the_cluster_prometheus_and_the_sink_and_moves_nothing(
        prometheus, tmp_path, monkeypatch, capsys):
    import threading
    from http.server import ThreadingHTTPServer

    from kfkit import cli
    from kfkit.serving.log_sink import REQUEST_TYPE, RESPONSE_TYPE, make_http_server
    from tests.test_kserve import Recording
    from tests.test_log_sink import REQUEST, RESPONSE, headers, post

    class Canary(Recording):
        service = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                   "metadata": {"name": "penguins", "namespace": NAMESPACE, "resourceVersion": "7", "generation": 2,
                                "annotations": {kserve.PREVIOUS_VERSION: "1", kserve.DEPLOYED_AT: str(T0)}},
                   "spec": {"predictor": {"canaryTrafficPercent": 20, "labels": {"kfkit.io/model": "penguins",
                                                                                 "kfkit.io/model-version": "2"},
                                          "model": {"modelFormat": {"name": "tensorflow"},
                                                    "storageUri": "s3://m/penguins/2"}}},
                   "status": {"components": {"predictor": {"traffic": [
                       {"revisionName": "penguins-predictor-00002", "percent": 20, "latestRevision": True},
                       {"revisionName": "penguins-predictor-00001", "percent": 80, "tag": "prev"}]}}}}

    api = ThreadingHTTPServer(("127.0.0.1", 0), Canary)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    use_kubeconfig(tmp_path, monkeypatch, f"http://127.0.0.1:{api.server_port}")
    ready = threading.Event()
    sink = make_http_server(local_root=str(tmp_path / "sink"), port=0, ready=ready)
    threading.Thread(target=sink.run, daemon=True).start()
    assert ready.wait(30)
    sink_url = f"http://127.0.0.1:{sink.bound_port}"
    post(sink_url, REQUEST, headers("e-1", REQUEST_TYPE))
    post(sink_url, RESPONSE, headers("e-1", RESPONSE_TYPE))
    Canary.requests = []

    try:
        code = cli.main(["canary", "status", "--endpoint", "penguins", "--backend", "kserve", "--namespace", NAMESPACE,
                         "--prometheus-url", prometheus, "--request-logger-url", sink_url])
    finally:
        api.shutdown()
        sink.should_exit = True

    out = capsys.readouterr().out
    assert code == 0, out
    assert ("endpoint penguins: canary penguins-predictor-00002 (version 2, 20%) against "
            "penguins-predictor-00001") in out
    assert "verdict if judged now:" in out
    assert [method for method, _, _ in Canary.requests] == ["GET", "GET"]  # read twice, never replaced
