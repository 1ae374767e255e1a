"""kfkit log-sink: KServe's inference logger events in, kfkit request-log records out.

The events are what KServe's logger agent sends (kserve/kserve pkg/logger/worker.go): binary-mode
CloudEvents 1.0 through the CloudEvents Go SDK, so the attributes are ce-* headers (ce-id shared by
a request and its response, ce-type org.kubeflow.serving.inference.request/response, the extensions
inferenceservicename, namespace, component, endpoint, metadata, and annotations: a JSON object of
the annotations named in logger.metadataAnnotations) and the body is the payload as sent. Every
hostile event gets a 400 naming what is wrong, nothing is written, and the next valid one is logged.
"""

import http.client
import json
import threading

import pytest

from kfkit.errors import ConfigError, KfkitError
from kfkit.log_sink import (PENDING_MAX, PENDING_TTL_S, REQUEST_TYPE, RESPONSE_TYPE, LogSink, make_http_server,
                            read_records)
from kfkit.request_logs import records


def headers(event_id, kind, service="penguins", version="2", **extra):
    found = {"ce-specversion": "1.0", "ce-id": event_id, "ce-type": kind,
             "ce-source": "http://localhost:9081/", "ce-time": "2026-11-24T10:00:00.000Z",
             "ce-inferenceservicename": service, "ce-namespace": "kubeflow-user-example-com",
             "ce-component": "predictor", "ce-endpoint": "", "ce-metadata": "{}",
             "ce-annotations": json.dumps({"kfkit.io/model": "penguins", "kfkit.io/model-version": version}),
             "content-type": "application/json"}
    found.update(extra)
    return {k: v for k, v in found.items() if v is not None}


REQUEST = {"instances": [{"island": "Biscoe", "bill_length_mm": 45.1, "id": "r1"}]}
RESPONSE = {"predictions": [{"classes": "Gentoo", "scores": [0.1, 0.1, 0.8]}]}


@pytest.fixture
def sink(tmp_path):  # one per test: each starts from an empty log, and mutation testing sees every test build the app
    root = tmp_path
    ready = threading.Event()
    server = make_http_server(local_root=str(root), services=["penguins"], port=0, ready=ready)
    started = threading.Thread(target=server.run, daemon=True)
    started.start()
    assert ready.wait(30)
    yield f"http://127.0.0.1:{server.bound_port}", server.sink, root
    server.should_exit = True
    started.join(10)


def post(url, body, event_headers):
    host = url.split("//")[1]
    connection = http.client.HTTPConnection(host, timeout=10)
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    connection.request("POST", "/", body=payload, headers=event_headers)
    response = connection.getresponse()
    answer = json.loads(response.read() or b"{}")
    connection.close()
    return response.status, answer


def logged(root, service="penguins"):
    return list(records(root / "request_logs" / service, 0, 4e9))


def test_a_request_and_its_response_become_one_record_of_the_version_that_answered(sink):
    url, _, root = sink
    before = len(logged(root))

    first = post(url, REQUEST, headers("e-1", REQUEST_TYPE))
    second = post(url, RESPONSE, headers("e-1", RESPONSE_TYPE))

    assert first == (200, {"logged": False, "waiting_for": "response"})
    assert second == (200, {"logged": True, "model_version": "2"})
    record = logged(root)[before]
    assert (record["deployed_model_id"], record["model"], record["model_version"], record["status"]) == (
        "penguins-v2", "penguins", "2", 200)
    assert record["instances"] == REQUEST["instances"] and record["predictions"] == RESPONSE["predictions"]
    assert "latency_ms" not in record  # the logger's send times are not the model's latency


def test_a_response_that_arrives_before_its_request_is_paired_all_the_same(sink):
    url, _, root = sink
    before = len(logged(root))

    post(url, RESPONSE, headers("e-2", RESPONSE_TYPE, version="3"))
    status, answer = post(url, REQUEST, headers("e-2", REQUEST_TYPE, version="3"))

    assert (status, answer) == (200, {"logged": True, "model_version": "3"})
    assert logged(root)[before]["model_version"] == "3"


def test_the_canary_reads_a_window_of_records_back_over_http(sink):
    url, _, _ = sink
    post(url, REQUEST, headers("e-3", REQUEST_TYPE, version="4"))
    post(url, RESPONSE, headers("e-3", RESPONSE_TYPE, version="4"))

    found = list(read_records(url, "penguins", 0, 4e9))
    nothing = list(read_records(url, "penguins", 0, 1))

    assert "4" in {r["model_version"] for r in found} and nothing == []


@pytest.mark.parametrize("change, message", [
    ({"ce-specversion": "0.3"}, "ce-specversion must be 1.0"),
    ({"ce-specversion": None}, "ce-specversion must be 1.0"),
    ({"ce-type": "com.example.other"}, "ce-type 'com.example.other' is neither"),
    ({"ce-id": None}, "ce-id must be 1 to 256 characters, got 0"),
    ({"ce-id": "x" * 257}, "ce-id must be 1 to 256 characters, got 257"),
    ({"ce-inferenceservicename": "../../etc"}, "ce-inferenceservicename '../../etc' is not an InferenceService name"),
    ({"ce-inferenceservicename": "taxi"}, "ce-inferenceservicename 'taxi' is not one this sink logs"),
    ({"ce-annotations": None}, "ce-annotations has no kfkit.io/model-version"),
    ({"ce-annotations": "{not json"}, "ce-annotations is not a JSON object"),
    ({"ce-annotations": '{"kfkit.io/model-version": 2}'}, "ce-annotations has no kfkit.io/model-version"),
])
def test_a_malformed_event_is_refused_naming_what_is_wrong_and_nothing_is_written(sink, change, message):
    url, _, root = sink
    before = len(logged(root))

    status, answer = post(url, REQUEST, headers("bad-1", REQUEST_TYPE, **change))
    post(url, RESPONSE, headers("bad-1", RESPONSE_TYPE))  # its valid other half finds nothing to pair with

    assert status == 400 and message in answer["error"]
    assert len(logged(root)) == before
    post(url, REQUEST, headers("good-after", REQUEST_TYPE))
    assert post(url, RESPONSE, headers("good-after", RESPONSE_TYPE)) == (200, {"logged": True, "model_version": "2"})


@pytest.mark.parametrize("body, message", [
    (b"{not json", "the request body is not valid JSON"),
    (b'{"instances": [NaN]}', "NaN is not a JSON number"),
    (b"\xff\xfe", "the request body is not UTF-8"),
    (b"[1, 2]", "the request body must be a JSON object"),
    (b'{"instances": [1e999]}', "body.instances[0] is out of the range of a 64-bit float"),
])
def test_a_body_that_is_not_strict_json_is_refused_naming_it(sink, body, message):
    url, _, root = sink
    before = len(logged(root))

    status, answer = post(url, body, headers("bad-body", REQUEST_TYPE))

    assert status == 400 and message in answer["error"]
    assert len(logged(root)) == before


def test_a_body_over_the_limit_is_413(sink):
    url, _, _ = sink
    status, answer = post(url, b'{"instances": ["' + b"x" * (2 * 1024 * 1024) + b'"]}',
                          headers("big", REQUEST_TYPE))
    assert status == 413 and "limit" in answer["error"]


@pytest.mark.parametrize("query, message", [
    ("inferenceservice=penguins&start=0", "query parameter end must be a number"),
    ("inferenceservice=penguins&start=nan&end=1", "query parameter start must be epoch seconds from 0 to"),
    ("inferenceservice=penguins&start=0&end=1e12", "query parameter end must be epoch seconds from 0 to"),
    ("inferenceservice=..&start=0&end=1", "inferenceservice '..' is not an InferenceService name"),
])
def test_a_bad_records_query_is_refused_naming_the_parameter(sink, query, message):
    url, _, _ = sink
    connection = http.client.HTTPConnection(url.split("//")[1], timeout=10)
    connection.request("GET", f"/records?{query}")
    response = connection.getresponse()
    assert response.status == 400 and message in json.loads(response.read())["error"]


def test_an_unknown_route_is_404_naming_the_routes(sink):
    url, _, _ = sink
    connection = http.client.HTTPConnection(url.split("//")[1], timeout=10)
    connection.request("GET", "/")
    response = connection.getresponse()
    assert response.status == 404 and "POST / (KServe's logger)" in json.loads(response.read())["error"]


def test_a_response_without_predictions_is_not_logged_as_an_answer(tmp_path):
    sink = LogSink(tmp_path)
    sink.receive(headers("e", REQUEST_TYPE), json.dumps(REQUEST).encode())

    result = sink.receive(headers("e", RESPONSE_TYPE), b'{"error": "model failed"}')

    assert result["logged"] is False and "no instances or predictions" in result["reason"]
    assert logged(tmp_path) == []


def test_halves_that_never_meet_are_dropped_after_their_time_or_beyond_the_cap(tmp_path):
    now = [1000.0]
    sink = LogSink(tmp_path, clock=lambda: now[0])
    sink.receive(headers("old", REQUEST_TYPE), json.dumps(REQUEST).encode())
    now[0] += PENDING_TTL_S + 1

    result = sink.receive(headers("old", RESPONSE_TYPE), json.dumps(RESPONSE).encode())

    assert result["logged"] is False and sink.dropped == 1
    for i in range(PENDING_MAX + 5):
        sink.receive(headers(f"r{i}", REQUEST_TYPE), json.dumps(REQUEST).encode())
    assert len(sink._pending) == PENDING_MAX


def test_the_same_half_twice_keeps_the_newer_and_counts_the_older_dropped(tmp_path):
    sink = LogSink(tmp_path)
    sink.receive(headers("e", REQUEST_TYPE), json.dumps({"instances": [{"id": "old"}]}).encode())
    sink.receive(headers("e", REQUEST_TYPE), json.dumps(REQUEST).encode())

    sink.receive(headers("e", RESPONSE_TYPE), json.dumps(RESPONSE).encode())

    assert sink.dropped == 1 and logged(tmp_path)[0]["instances"] == REQUEST["instances"]


def test_a_sink_refuses_a_service_name_that_is_not_kubernetes_and_a_reader_an_address_that_is_not_http(tmp_path):
    with pytest.raises(ConfigError, match="--inference-service 'Penguins!' is not a Kubernetes name"):
        LogSink(tmp_path, ["Penguins!"])
    with pytest.raises(ConfigError, match="request_logger_url must be the http"):
        list(read_records("sink:8080", "penguins", 0, 1))


def test_an_unreachable_sink_is_an_error_naming_its_address():
    with pytest.raises(KfkitError, match="the log sink at http://127.0.0.1:9 could not be read"):
        list(read_records("http://127.0.0.1:9", "penguins", 0, 1, timeout_s=5))
