"""The ASGI app of `kfkit serve` on its own: limits, routes, statuses, strict JSON and metrics, with a
stand-in for the model server (kfkit's own ModelServer interface: ready, router, predict) so each
case runs in milliseconds. The same app with a real model: test_server_fast.py."""

import asyncio
from types import SimpleNamespace

import pytest

from kfkit.serving import http_app
from kfkit.serving.model_io import RequestError
from tests.test_server_fast import body_of_size, call


class StandIn:
    """What make_app uses of a ModelServer."""

    def __init__(self, deployed=(("a", 100),), answer=None):
        self.router = SimpleNamespace(revision=3, deployed=[SimpleNamespace(id=i, traffic=t) for i, t in deployed])
        self.bodies = []
        self.answer = answer

    def ready(self):
        return bool(self.router.deployed)

    def predict(self, body):
        self.bodies.append(body)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer or {"predictions": [len(body["instances"])], "deployedModelId": "a", "model": "m",
                               "modelVersionId": "1"}


@pytest.fixture
def server():
    return StandIn()


@pytest.fixture
def app(server):
    return http_app.make_app(server)


@pytest.mark.parametrize("size, status", [(http_app.MAX_BODY_BYTES, 200), (http_app.MAX_BODY_BYTES + 1, 413)])
@pytest.mark.parametrize("chunk", [0, 1000, 65536])
def test_the_limit_holds_however_the_body_is_framed(app, size, status, chunk):
    got, _, payload = call(app, "POST", "/predict", body_of_size(size), content_length=chunk == 0, chunk=chunk)

    assert got == status
    limit = http_app.MAX_BODY_BYTES
    if status == 413 and chunk:  # no Content-Length: counted as it streams in
        assert payload == {"error": f"request body is over {limit} bytes (1.5 MB, as on Vertex AI)"}
    elif status == 413:
        assert payload == {"error": f"request body is {size} bytes; the limit is {limit} (1.5 MB, as on Vertex AI)"}


def test_a_declared_length_over_the_limit_is_refused_before_reading(app, server):
    status, headers, payload = call(app, "POST", "/predict", body_of_size(http_app.MAX_BODY_BYTES + 1))

    assert status == 413 and headers["connection"] == "close"
    assert payload == {"error": f"request body is {http_app.MAX_BODY_BYTES + 1} bytes; the limit is "
                                f"{http_app.MAX_BODY_BYTES} (1.5 MB, as on Vertex AI)"}
    assert server.bodies == []


def test_a_content_length_that_is_not_a_number_is_400(app):
    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": [(b"content-length", b"ten")]}
    asyncio.run(app(scope, receive, send))

    assert sent[0]["status"] == 400 and sent[1]["body"] == b'{"error":"Content-Length is not a number"}'


def test_a_stalled_body_is_408_and_closes(app, monkeypatch):
    monkeypatch.setattr(http_app, "BODY_TIMEOUT_S", 0.05)
    sent = []

    async def receive():
        await asyncio.Event().wait()  # never: the client stopped sending

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": []}
    asyncio.run(app(scope, receive, send))

    assert sent[0]["status"] == 408 and (b"connection", b"close") in sent[0]["headers"]
    assert sent[1]["body"] == b'{"error":"the request body stalled for 0 s"}'


def test_a_client_that_went_away_gets_no_answer_and_is_counted(app):
    sent = []

    async def receive():
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(app({"type": "http", "method": "POST", "path": "/predict", "headers": []}, receive, send))

    assert sent == []
    assert 'kfkit_requests_total{route="predict",deployed_model="",status="499"} 1' in app.metrics.render()


@pytest.mark.parametrize("body, message", [
    (b"\xff\xfe", "the request body is not UTF-8"),
    (b'{"instances": [NaN]}', "NaN is not a JSON number: send finite numbers only"),
    (b'{"instances": [Infinity]}', "Infinity is not a JSON number: send finite numbers only"),
    (b"[" * 5000 + b"]" * 5000, "the request body nests deeper than"),
    (b'{"instances": [1,]}', "the request body is not valid JSON: "),
    (b'[1, 2]', "the request body must be a JSON object with an 'instances' list"),
    (b'{"instances": {"a": 1}}', "the request body must be a JSON object with an 'instances' list"),
    (b'{"instances": [1e999]}', "instances[0] is out of the range of a 64-bit float"),
    (b'{"instances": [{"x": 99999999999999999999}]}', "instances[0].x is an integer out of the 64-bit range"),
    (b'{"instances": [{"x": -9223372036854775809}]}', "instances[0].x is an integer out of the 64-bit range"),
    (b'{"instances": ["\\ud800"]}', "instances[0] holds an unpaired UTF-16 surrogate"),
    (b'{"instances": [{"\\udc00": 1}]}', "instances[0] key holds an unpaired UTF-16 surrogate"),
])
def test_hostile_json_is_400_naming_what_is_wrong(app, server, body, message):
    status, _, payload = call(app, "POST", "/predict", body)

    assert status == 400 and payload["error"].startswith(message)
    assert server.bodies == []


def test_integers_at_the_edges_of_64_bits_and_deep_but_allowed_nesting_pass(app, server):
    deep = b'{"instances": [' + b"[" * (http_app.MAX_DEPTH - 1) + b"1" + b"]" * (http_app.MAX_DEPTH - 1) + b"]}"

    assert call(app, "POST", "/predict", b'{"instances": [-9223372036854775808, 9223372036854775807, true, null]}')[0] == 200
    assert call(app, "POST", "/predict", deep)[0] == 200
    too_deep = b'{"instances": [' + b"[" * (http_app.MAX_DEPTH + 1) + b"1" + b"]" * (http_app.MAX_DEPTH + 1) + b"]}"
    status, _, payload = call(app, "POST", "/predict", too_deep)
    assert status == 400 and payload["error"].endswith(f"nests deeper than {http_app.MAX_DEPTH} levels")


def test_health_reports_the_revision_and_split_and_503_without_a_model():
    status, headers, payload = call(http_app.make_app(StandIn()), "GET", "/health")
    assert status == 200 and headers["content-type"] == "application/json"
    assert payload == {"status": "ok", "revision": 3, "deployedModels": [{"id": "a", "traffic": 100}]}
    empty = http_app.make_app(StandIn(deployed=()))
    status, _, payload = call(empty, "GET", "/health")
    assert status == 503 and payload["status"] == "not ready: no deployed model"
    status, _, payload = call(empty, "POST", "/predict", body_of_size(300))
    assert status == 503 and payload == {"error": "no model is deployed on this endpoint yet"}


def test_a_request_error_is_400_a_bug_is_500_and_a_non_finite_output_is_400():
    assert call(http_app.make_app(StandIn(answer=RequestError("instance 0: 'island' is missing"))), "POST",
                "/predict", body_of_size(300))[1:][1] == {"error": "instance 0: 'island' is missing"}
    status, _, payload = call(http_app.make_app(StandIn(answer=KeyError("x"))), "POST", "/predict", body_of_size(300))
    assert status == 500 and payload == {"error": "prediction failed: KeyError: 'x'"}
    status, _, payload = call(http_app.make_app(StandIn(answer={"predictions": [float("nan")], "deployedModelId": "a"})),
                              "POST", "/predict", body_of_size(300))
    assert status == 400 and payload["error"].startswith("the model's output is not a finite number")


def test_custom_routes_replace_the_defaults():
    app = http_app.make_app(StandIn(), health_route="/h", predict_route="/p")

    assert call(app, "GET", "/h")[0] == 200 and call(app, "POST", "/p", body_of_size(300))[0] == 200
    status, _, payload = call(app, "POST", "/predict", body_of_size(300))
    assert status == 404 and payload == {"error": "no route /predict; use GET /h or POST /p"}


def test_metrics_count_requests_by_route_model_and_status_with_a_latency_histogram(app):
    call(app, "POST", "/predict", body_of_size(300))
    call(app, "POST", "/predict", body_of_size(300))
    call(app, "GET", "/nowhere")
    call(app, "GET", "/health")

    status, headers, text = call(app, "GET", "/metrics")

    assert status == 200 and headers["content-type"] == "text/plain; version=0.0.4"
    lines = text.splitlines()
    assert 'kfkit_requests_total{route="predict",deployed_model="a",status="200"} 2' in lines
    assert 'kfkit_requests_total{route="unknown",deployed_model="",status="404"} 1' in lines
    assert 'kfkit_requests_total{route="health",deployed_model="",status="200"} 1' in lines
    assert 'kfkit_predict_latency_seconds_bucket{le="+Inf"} 2' in lines
    assert "kfkit_predict_latency_seconds_count 2" in lines
    buckets = [int(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("kfkit_predict_latency_seconds_bucket")]
    assert buckets == sorted(buckets) and buckets[-1] == 2
    assert float(next(line for line in lines if line.startswith("kfkit_predict_latency_seconds_sum")).split()[1]) > 0


def test_the_metrics_histogram_counts_each_request_in_every_bucket_at_or_above_its_latency():
    metrics = http_app.Metrics()

    metrics.observe("predict", "a", 200, http_app.LATENCY_BUCKETS[1])
    metrics.observe("health", "", 200, 99.0)

    assert metrics.buckets == [0, 1] + [1] * (len(http_app.LATENCY_BUCKETS) - 2)
    assert (metrics.latency_count, metrics.latency_sum) == (1, http_app.LATENCY_BUCKETS[1])
    assert metrics.requests == {("predict", "a", 200): 1, ("health", "", 200): 1}


def test_each_request_is_one_json_access_log_line(app, caplog):
    import json

    with caplog.at_level("INFO", logger="kfkit.access"):
        call(app, "POST", "/predict", body_of_size(300))
        call(app, "POST", "/predict", b"[")

    ok, bad = (json.loads(r.getMessage()) for r in caplog.records if r.name == "kfkit.access")
    assert set(ok) == {"client", "method", "path", "status", "ms", "deployed_model"}
    assert (ok["client"], ok["method"], ok["path"], ok["status"], ok["deployed_model"]) == (
        "127.0.0.1", "POST", "/predict", 200, "a")
    assert 0 < ok["ms"] < 60_000 and round(ok["ms"], 2) == ok["ms"]
    assert bad["status"] == 400 and bad["error"].startswith("the request body is not valid JSON")


def test_access_lines_go_through_the_loggers_filters_and_handlers_as_logger_info_sends_them(app, caplog):
    import logging

    access = logging.getLogger("kfkit.access")
    dropped = []
    access.addFilter(lambda record: dropped.append(record) and False)  # drops every line
    try:
        with caplog.at_level("INFO", logger="kfkit.access"):
            call(app, "POST", "/predict", body_of_size(300))
    finally:
        access.filters.clear()
    with caplog.at_level("INFO", logger="kfkit.access"):
        call(app, "POST", "/predict", body_of_size(300))

    [filtered] = dropped
    [record] = [r for r in caplog.records if r.name == "kfkit.access"]
    assert (record.levelno, record.args, record.exc_info) == (logging.INFO, (), None)
    assert filtered.getMessage().startswith('{"client": "127.0.0.1", "method": "POST"')
    assert record.getMessage().startswith('{"client": "127.0.0.1", "method": "POST"')


@pytest.mark.parametrize("client, method, path, status, ms, deployed, error", [
    ("127.0.0.1", "POST", "/predict", 200, 0.52, "penguins-v1-85da8d", ""),
    ("::1", "GET", "/v1/models/m:predict", 404, 1e-05, "", "no route /x; use GET /health"),
    ("", "POST", "/p\u00e9/\"q\"\\", 400, 12345.67, "d\u2603", "bad \"value\"\n\t\x00 \ud800 \u00e9"),
    ("127.0.0.1", "POST", "/predict", 500, 0.0, "a", "ValueError: x"),
    (None, "POST", "/predict", 200, 1.5, "a", ""),           # not a str: json.dumps itself
    ("127.0.0.1", "POST", "/predict", True, 1.5, "a", ""),   # a bool is no status code: json.dumps
    ("127.0.0.1", "POST", "/predict", 200, 3, "a", ""),      # an int for ms: json.dumps
    ("127.0.0.1", "POST", "/predict", 200, float("nan"), "a", ""),
])
def test_an_access_line_is_the_text_json_dumps_makes_of_its_fields(client, method, path, status, ms, deployed, error):
    import json

    fields = {"client": client, "method": method, "path": path, "status": status, "ms": ms, "deployed_model": deployed,
              **({"error": error} if error else {})}

    assert http_app.access_line(client, method, path, status, ms, deployed, error) == json.dumps(fields)


def test_the_lifespan_starts_and_drains_on_shutdown(app):
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    asyncio.run(app({"type": "lifespan"}, receive, send))

    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]


def test_concurrent_requests_are_all_answered_by_the_model_server():
    server = StandIn()
    app = http_app.make_app(server)

    async def one(n):
        sent = []
        body = iter([{"type": "http.request", "body": body_of_size(200 + n), "more_body": False}])

        async def receive():
            await asyncio.sleep(0)  # let the other requests in: they overlap in the app
            return next(body)

        async def send(message):
            sent.append(message)

        await app({"type": "http", "method": "POST", "path": "/predict", "headers": []}, receive, send)
        return sent[0]["status"]

    async def many():
        return await asyncio.gather(*(one(n) for n in range(8)))

    assert asyncio.run(many()) == [200] * 8
    assert len(server.bodies) == 8


def test_a_request_error_is_a_400_with_its_message_and_the_allow_header_names_the_method():
    app = http_app.make_app(StandIn(answer=RequestError("instance 0: 'island' is missing")))

    assert call(app, "POST", "/predict", body_of_size(300))[0] == 400
    assert call(app, "PUT", "/health")[1]["allow"] == "GET"


def test_the_metrics_text_is_prometheus_exposition_format():
    metrics = http_app.Metrics()
    metrics.observe("predict", "a", 200, 0.02)

    text = metrics.render()

    assert text.endswith("\n")
    assert text.splitlines()[:3] == ["# HELP kfkit_requests_total Requests by route, deployed model and status.",
                                     "# TYPE kfkit_requests_total counter",
                                     'kfkit_requests_total{route="predict",deployed_model="a",status="200"} 1']
    assert "# TYPE kfkit_predict_latency_seconds histogram" in text
    assert 'kfkit_predict_latency_seconds_bucket{le="0.025"} 1' in text
    assert 'kfkit_predict_latency_seconds_bucket{le="0.01"} 0' in text
    assert "kfkit_predict_latency_seconds_sum 0.02" in text


@pytest.mark.parametrize("method, path, allow", [("GET", "/predict", "POST"), ("POST", "/health", "GET"),
                                                 ("DELETE", "/metrics", "GET"), ("HEAD", "/predict", "POST")])
def test_a_wrong_method_is_405_naming_the_right_one(app, method, path, allow):
    status, headers, payload = call(app, method, path)

    assert status == 405 and headers["allow"] == allow
    assert payload == {"error": f"{method} is not allowed on {path}; use {allow}"}


def test_answers_carry_their_exact_length_and_the_log_names_a_missing_client_and_model(caplog):
    import json

    app = http_app.make_app(StandIn(answer={"predictions": [1]}))
    sent = []

    async def receive():
        return {"type": "http.request", "body": body_of_size(300), "more_body": False}

    async def send(message):
        sent.append(message)

    with caplog.at_level("INFO", logger="kfkit.access"):
        asyncio.run(app({"type": "http", "method": "POST", "path": "/predict", "headers": []}, receive, send))

    headers = dict(sent[0]["headers"])
    assert sent[0]["status"] == 200 and int(headers[b"content-length"]) == len(sent[1]["body"])
    line = json.loads(caplog.records[-1].getMessage())
    assert (line["client"], line["deployed_model"]) == ("", "")
