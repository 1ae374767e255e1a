"""kfkit log-sink: KServe's inference logger events in, kfkit request-log records out.

The events are what KServe's logger agent sends (kserve/kserve pkg/logger/worker.go): binary-mode
CloudEvents 1.0 through the CloudEvents Go SDK, so the attributes are ce-* headers (ce-id shared by
a request and its response, ce-type org.kubeflow.serving.inference.request/response, the extensions
inferenceservicename, namespace, component, endpoint, metadata, and annotations: a JSON object of
the annotations named in logger.metadataAnnotations) and the body is the payload as sent. Every
hostile event gets a 400 naming what is wrong, nothing is written, and the next valid one is logged.
"""

import asyncio
import http.client
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kfkit.errors import ConfigError, KfkitError
from kfkit.serving.log_sink import (LAST_SECOND, PENDING_MAX, PENDING_TTL_S, REQUEST_TYPE, RESPONSE_TYPE, LogSink, make_app,
                            make_http_server, read_records)
from kfkit.serving.request_logs import records


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
    server = make_http_server(local_root=str(root), services=["penguins", "taxi-tips"], port=0, ready=ready)
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
    assert (record["endpoint"], record["deployed_model_id"], record["model"], record["model_version"],
            record["status"]) == ("penguins", "penguins-v2", "penguins", "2", 200)
    assert record["instances"] == REQUEST["instances"] and record["predictions"] == RESPONSE["predictions"]
    assert "latency_ms" not in record  # the logger's send times are not the model's latency


def test_a_response_that_arrives_before_its_request_is_paired_all_the_same(sink):
    url, _, root = sink
    before = len(logged(root))

    first = post(url, RESPONSE, headers("e-2", RESPONSE_TYPE, version="3"))
    status, answer = post(url, REQUEST, headers("e-2", REQUEST_TYPE, version="3"))

    assert first == (200, {"logged": False, "waiting_for": "request"})
    assert (status, answer) == (200, {"logged": True, "model_version": "3"})
    record = logged(root)[before]
    assert record["model_version"] == "3"
    assert record["instances"] == REQUEST["instances"] and record["predictions"] == RESPONSE["predictions"]


def test_the_version_is_the_one_the_answering_pod_names_and_the_model_defaults_to_the_service(sink):
    url, _, root = sink
    only_version = json.dumps({"kfkit.io/model-version": "5"})

    post(url, REQUEST, headers("e-5", REQUEST_TYPE, version="4"))
    post(url, RESPONSE, headers("e-5", RESPONSE_TYPE, **{"ce-annotations": only_version}))

    [record] = logged(root)
    assert (record["model"], record["model_version"]) == ("penguins", "5")


def test_the_canary_reads_a_window_of_records_back_over_http(sink):
    url, _, _ = sink
    post(url, REQUEST, headers("e-3", REQUEST_TYPE, version="4"))
    post(url, RESPONSE, headers("e-3", RESPONSE_TYPE, version="4"))

    found = list(read_records(url + "/", "penguins", 0, 4e9))
    nothing = list(read_records(url, "penguins", 0, 1))

    assert "4" in {r["model_version"] for r in found} and nothing == []


def test_records_come_back_whole_as_compact_json_lines_without_server_or_date_headers(sink):
    url, _, root = sink
    for event_id in ("w-1", "w-2"):
        post(url, REQUEST, headers(event_id, REQUEST_TYPE))
        post(url, RESPONSE, headers(event_id, RESPONSE_TYPE))
    connection = http.client.HTTPConnection(url.split("//")[1], timeout=10)

    connection.request("GET", f"/records?inferenceservice=penguins&start=0&end={LAST_SECOND}")
    response = connection.getresponse()
    body = response.read()  # raises IncompleteRead unless the chunked body is ended properly

    assert response.status == 200 and response.getheader("content-type") == "application/x-ndjson"
    assert response.getheader("server") is None and response.getheader("date") is None
    assert body.decode() == "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in logged(root))
    assert len(logged(root)) == 2


def test_health_says_ok_with_the_halves_waiting_and_dropped(sink):
    url, _, _ = sink
    post(url, REQUEST, headers("h-1", REQUEST_TYPE))
    connection = http.client.HTTPConnection(url.split("//")[1], timeout=10)

    answers = []
    for method in ("GET", "HEAD", "POST"):
        connection.request(method, "/health")
        response = connection.getresponse()
        answers.append((response.status, response.read()))

    assert answers[0] == (200, b'{"status":"ok","waiting":1,"dropped":0}') and answers[1] == (200, b"")
    assert answers[2][0] == 404 and json.loads(answers[2][1]) == {
        "error": "no route POST /health; use POST / (KServe's logger), GET /records, GET /health"}


def test_an_event_the_sink_fails_on_is_500_naming_the_error_and_the_next_is_logged(sink, caplog):
    url, _, root = sink
    (root / "request_logs").mkdir(exist_ok=True)
    (root / "request_logs" / "penguins").write_text("a file where the log directory goes")
    post(url, REQUEST, headers("f-1", REQUEST_TYPE))

    status, answer = post(url, RESPONSE, headers("f-1", RESPONSE_TYPE))

    assert status == 500 and answer["error"].startswith("NotADirectoryError: ")
    assert "event failed" in [r.getMessage() for r in caplog.records if r.name == "kfkit.log_sink"]
    (root / "request_logs" / "penguins").unlink()
    post(url, REQUEST, headers("f-2", REQUEST_TYPE))
    assert post(url, RESPONSE, headers("f-2", RESPONSE_TYPE)) == (200, {"logged": True, "model_version": "2"})


def test_the_sink_closes_its_logs_when_the_server_shuts_down(tmp_path):
    sink = LogSink(tmp_path)
    closed = []
    sink.close = lambda: closed.append(True)
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent = []

    async def receive():
        return next(messages)

    async def send(message):
        sent.append(message)

    asyncio.run(make_app(sink)({"type": "lifespan"}, receive, send))

    assert closed == [True]
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]


@pytest.mark.parametrize("change, message", [
    ({"ce-specversion": "0.3"}, "ce-specversion must be 1.0 (a binary-mode CloudEvent, as KServe's logger sends), "
                                "got '0.3'"),
    ({"ce-specversion": None}, "ce-specversion must be 1.0 (a binary-mode CloudEvent, as KServe's logger sends), "
                               "got None"),
    ({"ce-type": "com.example.other"}, "ce-type 'com.example.other' is neither"),
    ({"ce-type": None}, "ce-type '' is neither"),
    ({"ce-id": None}, "ce-id must be 1 to 256 characters, got 0"),
    ({"ce-id": "x" * 257}, "ce-id must be 1 to 256 characters, got 257"),
    ({"ce-inferenceservicename": "../../etc"}, "ce-inferenceservicename '../../etc' is not an InferenceService name"),
    ({"ce-inferenceservicename": None}, "ce-inferenceservicename '' is not an InferenceService name"),
    ({"ce-inferenceservicename": "taxi"}, "ce-inferenceservicename 'taxi' is not one this sink logs (penguins, "
                                          "taxi-tips)"),
    ({"ce-annotations": None}, "ce-annotations has no kfkit.io/model-version: deploy the InferenceService with "
                               "request_logger_url, which lists kfkit's annotations in logger.metadataAnnotations"),
    ({"ce-annotations": "{not json"}, "ce-annotations is not a JSON object"),
    ({"ce-annotations": "{" + "x" * 100}, "ce-annotations is not a JSON object: '{" + "x" * 79 + "'"),
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
    ("start=0&end=1", "inferenceservice '' is not an InferenceService name"),
])
def test_a_bad_records_query_is_refused_naming_the_parameter(sink, query, message):
    url, _, _ = sink
    connection = http.client.HTTPConnection(url.split("//")[1], timeout=10)
    connection.request("GET", f"/records?{query}")
    response = connection.getresponse()
    assert response.status == 400 and message in json.loads(response.read())["error"]


def test_the_longest_id_and_the_last_second_are_taken(sink):
    url, _, _ = sink
    post(url, REQUEST, headers("x" * 256, REQUEST_TYPE))

    assert post(url, RESPONSE, headers("x" * 256, RESPONSE_TYPE)) == (200, {"logged": True, "model_version": "2"})
    assert len(list(read_records(url, "penguins", LAST_SECOND, LAST_SECOND))) == 0


def test_a_refusal_read_back_names_the_sink_and_its_answer(sink):
    url, _, _ = sink
    with pytest.raises(KfkitError) as raised:
        list(read_records(url, "..", 0, 1))
    assert str(raised.value) == (f"the log sink at {url} answered 400: "
                                 '{"error":"inferenceservice \'..\' is not an InferenceService name"}')


class CutLines(BaseHTTPRequestHandler):
    """A sink whose answer holds a line cut short, then a whole one."""

    def do_GET(self):
        body = b'{"model_version": "2", "times\n{"model_version": "3"}\n[1]\n'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_line_cut_short_is_skipped_and_the_lines_after_it_read():
    server = ThreadingHTTPServer(("127.0.0.1", 0), CutLines)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        found = list(read_records(f"http://127.0.0.1:{server.server_port}", "p", 0, 1))
    finally:
        server.shutdown()
    assert found == [{"model_version": "3"}]


def test_a_sink_that_never_answers_times_out_and_an_https_address_is_taken():
    with socket.socket() as listening:  # accepts connections (the backlog) and never reads them
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        with pytest.raises(KfkitError, match="could not be read: .*timed out"):
            list(read_records(f"http://127.0.0.1:{listening.getsockname()[1]}", "p", 0, 1, timeout_s=0.2))
    with pytest.raises(KfkitError, match="the log sink at https://127.0.0.1:9 could not be read"):
        list(read_records("https://127.0.0.1:9", "p", 0, 1, timeout_s=5))


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
    assert len(sink._pending) == PENDING_MAX and sink.dropped == 1 + 1 + 5  # "old" response expired too
    assert ("penguins", "r4") not in sink._pending and ("penguins", "r5") in sink._pending  # the oldest go


def test_a_half_exactly_as_old_as_the_limit_still_pairs(tmp_path):
    now = [1000.0]
    sink = LogSink(tmp_path, clock=lambda: now[0])
    sink.receive(headers("e", REQUEST_TYPE), json.dumps(REQUEST).encode())
    now[0] += PENDING_TTL_S

    assert sink.receive(headers("e", RESPONSE_TYPE), json.dumps(RESPONSE).encode())["logged"] is True


def test_the_same_half_twice_keeps_the_newer_and_counts_the_older_dropped(tmp_path):
    sink = LogSink(tmp_path)
    sink.receive(headers("e", REQUEST_TYPE), json.dumps({"instances": [{"id": "older"}]}).encode())
    sink.receive(headers("e", REQUEST_TYPE), json.dumps({"instances": [{"id": "old"}]}).encode())
    sink.receive(headers("e", REQUEST_TYPE), json.dumps(REQUEST).encode())

    sink.receive(headers("e", RESPONSE_TYPE), json.dumps(RESPONSE).encode())

    assert sink.dropped == 2 and logged(tmp_path)[0]["instances"] == REQUEST["instances"]


def test_a_sink_refuses_a_service_name_that_is_not_kubernetes_and_a_reader_an_address_that_is_not_http(tmp_path):
    with pytest.raises(ConfigError, match="--inference-service 'Penguins!' is not a Kubernetes name"):
        LogSink(tmp_path, ["Penguins!"])
    with pytest.raises(ConfigError, match="request_logger_url must be the http"):
        list(read_records("sink:8080", "penguins", 0, 1))


def test_an_unreachable_sink_is_an_error_naming_its_address():
    with pytest.raises(KfkitError, match="the log sink at http://127.0.0.1:9 could not be read"):
        list(read_records("http://127.0.0.1:9", "penguins", 0, 1, timeout_s=5))
