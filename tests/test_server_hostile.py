"""Hostile clients against `kfkit serve` (uvicorn + kfkit's guards) on 127.0.0.1: malformed framing,
smuggling attempts, hostile JSON, slow and idle connections. Each case asserts the status (always
JSON) and that a valid request right after it is answered."""

import http.client
import json
import signal
import resource
import socket
import threading
import time

import pytest

from kfkit.serving import http_app
from kfkit.serving.endpoints import LocalEndpoints
from kfkit.serving.server import make_http_server
from tests.answers import as_answered
from tests.serve_process import kfkit_serve

PENGUIN = {"island": "Biscoe", "culmen_length_mm": 47.5, "culmen_depth_mm": 15.0, "flipper_length_mm": 218.0,
           "body_mass_g": 4950.0, "sex": "FEMALE"}
VALID = json.dumps({"instances": [PENGUIN]}).encode()


@pytest.fixture(scope="module")
def live(tmp_path_factory, penguin_model):
    root = tmp_path_factory.mktemp("hostile-root")
    LocalEndpoints(root).deploy("penguins", "penguins", "1", str(penguin_model))
    ready = threading.Event()
    server = make_http_server(endpoint="penguins", local_root=str(root), port=0, ready=ready, max_connections=4096)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert ready.wait(60)
    yield server.bound_port, root, server
    server.should_exit = True
    thread.join(30)


def request(port, method="POST", path="/predict", body=VALID, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, response.getheader("Content-Type"), data


def raw(port, payload: bytes, read_timeout=3.0, half_close=True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        sock.sendall(payload)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def answered_after(port):
    status, kind, data = request(port)
    assert status == 200 and json.loads(data)["predictions"], data
    return True


def statuses(response: bytes) -> list[int]:
    return [int(line.split()[1]) for line in response.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]


@pytest.mark.parametrize("payload, expected", [
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n" + VALID, 400),
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n" + VALID, 400),
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\n" + VALID, 400),
    (b"GARBAGE\r\n\r\n", 400),
])
def test_malformed_framing_is_refused_and_its_bytes_never_run_as_a_request(live, payload, expected):
    port, root, _ = live
    before = _logged(live)

    response = raw(port, payload)

    assert statuses(response)[:1] in ([expected], [])  # refused, or the connection closed
    assert 200 not in statuses(response)
    if statuses(response):
        head, _, body = response.partition(b"\r\n\r\n")
        assert b"application/json" in head and json.loads(body)["error"]
    assert _logged(live) == before  # nothing reached the model
    assert answered_after(port)


def test_chunked_body_is_read_as_one_body_not_as_a_second_request(live):
    port, root, _ = live
    smuggled = b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
    body = VALID + smuggled
    payload = (b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
               + f"{len(body):x}".encode() + b"\r\n" + body + b"\r\n0\r\n\r\n")

    response = raw(port, payload, half_close=False)

    assert statuses(response) == [400]  # the body with the trailing bytes is not valid JSON
    assert b"no route /nope" not in response
    assert answered_after(port)


def test_content_length_with_transfer_encoding_is_not_smuggled(live):
    port, root, _ = live
    before = _logged(live)
    payload = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"0\r\n\r\nPOST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(VALID)).encode()
               + b"\r\n\r\n" + VALID)

    response = raw(port, payload)

    assert 200 not in statuses(response)[:1]
    assert _logged(live) - before <= 1  # never two predictions from one request's bytes
    assert answered_after(port)


@pytest.mark.parametrize("body, field", [
    (b'{"instances": [{"culmen_length_mm": Infinity}]}', "Infinity"),
    (b'{"instances": [{"culmen_length_mm": NaN}]}', "NaN"),
    (b'{"instances": [{"island": "Biscoe", "culmen_length_mm": 1e400}]}', "instances[0].culmen_length_mm"),
    (b'{"instances": [{"body_mass_g": 1' + b"0" * 400 + b"}]}", "instances[0].body_mass_g"),
    (b'{"instances": [{"island": "\\ud800"}]}', "instances[0].island"),
    (b'{"instances": ' + b"[" * 10000 + b"]" * 10000 + b"}", "nests deeper"),
    (b"\xff\xfe not utf-8", "not UTF-8"),
    (b'{"instances": "no"}', "'instances' list"),
    (b"[1, 2]", "'instances' list"),
])
def test_hostile_json_gets_400_naming_the_field_never_500(live, body, field):
    port, _, _ = live

    status, kind, data = request(live[0], body=body)

    assert status == 400 and kind == "application/json"
    assert field in json.loads(data)["error"]
    assert answered_after(port)


def test_a_number_beyond_the_models_float32_range_is_400_naming_it_never_nan(live):
    port, _, _ = live
    huge = dict(PENGUIN, body_mass_g=1.7e308)

    status, kind, data = request(port, body=json.dumps({"instances": [huge]}).encode())

    assert status == 400 and b"NaN" not in data and b"Infinity" not in data
    assert "float32 range" in json.loads(data)["error"] and "body_mass_g" in json.loads(data)["error"]


@pytest.mark.parametrize("method, path, expected", [
    ("PUT", "/predict", 405), ("GET", "/predict", 405), ("DELETE", "/health", 405),
    ("GET", "/nope", 404), ("POST", "/health", 405)])
def test_every_answer_is_json_with_the_right_status(live, method, path, expected):
    status, kind, data = request(live[0], method=method, path=path, body=VALID if method != "GET" else None)

    assert status == expected and kind == "application/json" and json.loads(data)["error"]


def test_body_limit_is_413_just_over_and_not_at_1_5_mb(live):
    port, _, _ = live
    limit = http_app.MAX_BODY_BYTES
    padding = b" " * (limit - len(VALID))

    at_limit = request(port, body=VALID + padding)
    over = VALID + padding + b" "
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(over))
        try:
            sock.sendall(over)  # the server may answer and close before it has all of it
        except OSError:
            pass
        response = sock.recv(65536)

    assert len(VALID + padding) == limit and at_limit[0] == 200
    assert statuses(response) == [413] and b"1.5 MB" in response and b"application/json" in response
    assert answered_after(port)


@pytest.mark.parametrize("chunked", [False, True])
def test_a_client_that_sends_a_whole_oversized_body_reads_the_413_not_a_reset(live, chunked):
    port, _, _ = live
    body = b" " * (4 * 1024 * 1024)  # well over the limit, more than the socket buffers hold
    if chunked:
        framing = b"Transfer-Encoding: chunked"
        body = b"".join(b"%x\r\n%s\r\n" % (len(part), part)
                        for part in (body[i:i + 65536] for i in range(0, len(body), 65536))) + b"0\r\n\r\n"
    else:
        framing = b"Content-Length: %d" % len(body)

    response = raw(port, b"POST /predict HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\n\r\n" + body, read_timeout=10,
                   half_close=False)

    assert statuses(response) == [413] and b"1.5 MB" in response
    assert answered_after(port)


def test_a_client_that_never_finishes_its_headers_is_cut_off(live, monkeypatch):
    port, _, _ = live
    monkeypatch.setattr(http_app, "HEADER_TIMEOUT_S", 0.5)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")  # and nothing more
        started = time.monotonic()
        assert sock.recv(1024) == b""  # the server closed it
        assert time.monotonic() - started < 5
    assert answered_after(port)


def keep_alive_requests(sock, until: float) -> int:
    """Predictions one after another on one kept-alive connection until the monotonic time `until`."""
    answered = 0
    while time.monotonic() < until:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(VALID), VALID))
        response = b""
        while b"\r\n\r\n" not in response or len(response.split(b"\r\n\r\n", 1)[1]) < int(
                response.split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0]):
            chunk = sock.recv(65536)
            assert chunk, f"the server closed a busy connection after {answered} answers"
            response += chunk
        assert statuses(response) == [200]
        answered += 1
    return answered


def test_a_busy_connection_outlives_its_header_and_keep_alive_deadlines_and_is_closed_once_idle(live, monkeypatch):
    # the timers are armed once and move their deadlines with each request: when one fires on a busy
    # connection it must wait again, not close it; once the connection idles, it closes it
    port, _, server = live
    monkeypatch.setattr(http_app, "HEADER_TIMEOUT_S", 0.3)
    monkeypatch.setattr(server.config, "timeout_keep_alive", 0.3)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        answered = keep_alive_requests(sock, time.monotonic() + 1.5)  # five times either deadline
        idle_from = time.monotonic()
        assert sock.recv(1024) == b""  # closed once idle
        idled = time.monotonic() - idle_from
    assert answered > 10 and idled < 5
    assert answered_after(port)


def test_a_later_requests_stalled_headers_on_a_kept_alive_connection_are_cut_off(live, monkeypatch):
    port, _, server = live
    monkeypatch.setattr(http_app, "HEADER_TIMEOUT_S", 0.3)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        keep_alive_requests(sock, time.monotonic() + 0.5)
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")  # and nothing more
        started = time.monotonic()
        assert sock.recv(1024) == b""
        assert time.monotonic() - started < 4  # the keep-alive deadline (5 s) did not close it
    assert answered_after(port)


def test_a_client_that_stalls_its_body_gets_408(live, monkeypatch):
    port, _, _ = live
    monkeypatch.setattr(http_app, "BODY_TIMEOUT_S", 0.5)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"inst")
        response = sock.recv(4096)
    assert statuses(response) == [408]
    assert answered_after(port)


def test_a_thousand_idle_connections_do_not_stop_normal_clients(live):
    port, _, _ = live
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 4096), hard), hard))
    idle = []
    try:
        for _ in range(1000):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        started = time.monotonic()
        assert answered_after(port)
        assert time.monotonic() - started < 5
    finally:
        for sock in idle:
            sock.close()
    assert answered_after(port)


def test_metrics_count_requests_by_status_and_model(live):
    port, _, _ = live
    request(port)
    request(port, path="/nope")

    status, kind, data = request(port, method="GET", path="/metrics", body=None)

    text = data.decode()
    assert status == 200 and kind.startswith("text/plain")
    assert 'route="predict",deployed_model="penguins-v1' in text and 'status="200"' in text
    assert 'route="unknown",deployed_model="",status="404"' in text
    assert "kfkit_predict_latency_seconds_count" in text


def _logged(live) -> int:
    """Answered predictions in the request log (a failed request is logged too, without instances),
    once what the server's log buffers is written: its writer thread writes every 0.1 s, so a count
    read without the flush could miss an earlier test's records and find them at the next count."""
    _, root, server = live
    server.model_server.request_log.flush()
    return sum(sum('"instances"' in line for line in p.read_text().splitlines())
               for p in (root / "request_logs" / "penguins").glob("*.jsonl")) \
        if (root / "request_logs" / "penguins").exists() else 0


def test_no_request_fails_across_a_deploy_and_a_rollback(live, penguin_model):
    port, root, _ = live
    stop = threading.Event()
    results: list[int] = []

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while not stop.is_set():
            conn.request("POST", "/predict", body=VALID, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            results.append(response.status)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    endpoints = LocalEndpoints(root)
    deadline = time.monotonic() + 1.0
    while len(results) < 50 and time.monotonic() < deadline + 10:
        time.sleep(0.05)  # let traffic build up before the change (bounded)
    endpoints.deploy("penguins", "penguins", "2", str(penguin_model), traffic_percent=50)
    before = len(results)
    while len(results) < before + 100:
        time.sleep(0.05)
    endpoints.rollback("penguins")
    before = len(results)
    while len(results) < before + 100:
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join(30)

    assert len(results) >= 250 and set(results) == {200}


def test_health_is_not_ready_while_no_model_is_deployed(tmp_path):
    from kfkit.serving.server import ModelServer

    (tmp_path / "endpoints").mkdir()
    (tmp_path / "endpoints" / "empty.json").write_text(json.dumps(
        {"endpoint": "empty", "revision": 1, "deployed_models": [], "history": []}))
    server = ModelServer(endpoint="empty", local_root=str(tmp_path))
    app = http_app.make_app(server)

    status, body = _call(app, "GET", "/health")
    predict_status, predict_body = _call(app, "POST", "/predict", VALID)

    assert status == 503 and "not ready" in body["status"]
    assert predict_status == 503 and "no model is deployed" in predict_body["error"]


def _call(app, method, path, body=b""):
    import asyncio

    sent = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": [], "client": ("127.0.0.1", 1)}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], json.loads(sent[1]["body"])


def test_request_logs_are_private_strict_json_lines_rotated_and_pruned(tmp_path):
    import os
    import stat

    from kfkit.serving.server import Deployed, RequestLog

    log_dir = tmp_path / "logs" / "e"
    request_log = RequestLog(log_dir, "e", max_file_bytes=2000, max_total_bytes=5000, max_age_days=1)
    deployed = Deployed("d1", "m", "1", 100, None)
    for i in range(60):
        request_log.write(deployed, [{"x": i, "s": "\u2028é"}], [{"classes": "a"}])
    request_log.write(deployed, [{"x": float("nan")}], [{}])  # not JSON: skipped, never written as NaN
    aged = sorted(log_dir.glob("*.jsonl"), key=lambda p: p.stat().st_mtime)[0]
    os.utime(aged, (1, 1))  # one file made very old
    request_log.prune()

    files = sorted(log_dir.glob("*.jsonl"))
    assert stat.S_IMODE(os.stat(log_dir).st_mode) == 0o700
    assert all(stat.S_IMODE(os.stat(p).st_mode) == 0o600 for p in files)
    assert len(files) >= 2 and all(p.stat().st_size <= 2000 + 200 for p in files)
    assert sum(p.stat().st_size for p in files) <= 5000
    for path in files:
        for line in path.read_bytes().splitlines():
            record = json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in a log line"))
            assert line.isascii() and record["deployed_model_id"] == "d1"
    assert not aged.exists()


def test_sigterm_drains_and_exits_cleanly(penguin_model, tmp_path):
    import signal

    with kfkit_serve(penguin_model, tmp_path) as (process, port):
        batch = json.dumps({"instances": [PENGUIN] * 64}).encode()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.putrequest("POST", "/predict")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(batch)))
        conn.endheaders()
        conn.send(batch[:10])
        # a whole round trip on another connection after those bytes: the server has read this
        # request's headers, so the request is in flight when the signal comes
        assert answered_after(port)
        process.send_signal(signal.SIGTERM)
        conn.send(batch[10:])
        response = conn.getresponse()

        assert response.status == 200 and len(json.loads(response.read())["predictions"]) == 64
        assert process.wait(timeout=30) in (0, -15)  # drained, then ended by the signal it got


def test_over_the_connection_limit_new_requests_get_503_and_then_recover(tmp_path, penguin_model):
    ready = threading.Event()
    server = make_http_server(model_dir=str(penguin_model), local_root=str(tmp_path), port=0, ready=ready,
                              max_connections=3)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert ready.wait(60)
    port = server.bound_port
    try:
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
        time.sleep(0.2)  # let the server register the connections (bounded)
        status, kind, data = request(port)
        for sock in idle:
            sock.close()

        assert status == 503 and kind == "application/json" and "connection limit" in json.loads(data)["error"]
        deadline = time.monotonic() + 10
        while request(port)[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert answered_after(port)
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.mark.parametrize("args, lines", [((), 4), (("--no-access-log",), 0)])  # 3 predictions, /metrics
def test_serve_writes_an_access_line_per_request_unless_told_not_to_and_counts_them_either_way(
        penguin_model, tmp_path, args, lines):
    import http.client

    with kfkit_serve(penguin_model, tmp_path, args=args) as (process, port):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(3):
            conn.request("POST", "/predict", body=json.dumps({"instances": [PENGUIN]}),
                         headers={"Content-Type": "application/json"})
            answer = conn.getresponse()
            assert answer.read() and answer.status == 200
        conn.request("GET", "/metrics")
        metrics = conn.getresponse().read().decode()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) in (0, -15)

    written = (tmp_path / "serve.log").read_text()
    assert written.count(" kfkit.access INFO ") == lines
    assert 'kfkit_requests_total{route="predict",deployed_model="0",status="200"} 3' in metrics


def test_each_request_is_one_structured_access_log_line(live, caplog):
    port, _, _ = live
    with caplog.at_level("INFO", logger="kfkit.access"):
        request(port)
        request(port, method="PUT")

    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "kfkit.access"]
    assert [(line["method"], line["status"]) for line in lines] == [("POST", 200), ("PUT", 405)]
    assert lines[0]["deployed_model"].startswith("penguins-v1") and lines[0]["ms"] > 0


# A lone prediction whose body came with its headers is answered by GuardedProtocol itself, on the
# loop's thread (http_app's `fast`); everything else takes the ASGI round. Both must answer alike.

def answered_here(server, monkeypatch) -> list:
    """The bodies of the requests the protocol answered itself, from now on."""
    app, bodies = server.config.kfkit_app, []
    original = app.fast

    def counted(requests):
        bodies.extend(raw for _, raw, _ in requests)
        return original(requests)

    monkeypatch.setattr(app, "fast", counted)
    return bodies


def post(body: bytes, target: bytes = b"/predict", close: bool = True) -> bytes:
    return (b"POST " + target + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n" + (b"Connection: close\r\n" if close else b"") + b"\r\n" + body)


def split_answers(response: bytes) -> list[tuple[bytes, dict, bytes]]:
    """(status line, headers, body) of each HTTP/1.1 answer in a byte stream (Content-Length framed)."""
    answers = []
    while response:
        head, _, rest = response.partition(b"\r\n\r\n")
        status, *lines = head.split(b"\r\n")
        headers = dict(line.split(b": ", 1) for line in lines)
        length = int(headers[b"content-length"])
        answers.append((status, headers, rest[:length]))
        response = rest[length:]
    return answers


@pytest.mark.parametrize("body", [
    VALID,
    json.dumps({"instances": [{**PENGUIN, "island": 3}]}).encode(),
    b'{"instances": [',
    json.dumps({"instances": "all"}).encode(),
    json.dumps({"instances": [{**PENGUIN, "body_mass_g": 1e300}]}).encode(),
])
def test_a_lone_prediction_answered_on_the_loop_is_the_answer_of_the_asgi_round(live, monkeypatch, body):
    port, _, server = live
    here = answered_here(server, monkeypatch)

    fast = split_answers(raw(port, post(body), half_close=False))
    # a query string takes the ASGI round to the same route
    asgi = split_answers(raw(port, post(body, b"/predict?round=asgi"), half_close=False))

    assert here == [body]
    assert fast == asgi and len(fast) == 1
    assert fast[0][1][b"connection"] == b"close"


def test_pipelined_requests_are_answered_in_order_whichever_way_each_goes(live, monkeypatch):
    port, _, server = live
    here = answered_here(server, monkeypatch)
    bad = json.dumps({"instances": [{**PENGUIN, "sex": 1}]}).encode()
    stream = (post(VALID, close=False) + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" + post(bad, close=False)
              + post(VALID, close=False) + post(VALID, b"/predict?last=1"))

    answers = split_answers(raw(port, stream, read_timeout=10, half_close=False))

    assert [int(status.split()[1]) for status, _, _ in answers] == [200, 200, 400, 200, 200]
    assert b"predictions" in answers[0][2] and json.loads(answers[1][2])["status"] == "ok"
    assert b"'sex'" in answers[2][2] and b"predictions" in answers[3][2]
    assert here[0] == VALID  # the first was answered on the loop; the others waited their turn
    assert answered_after(port)


def test_a_body_still_arriving_takes_the_asgi_round_and_is_answered_whole(live, monkeypatch):
    port, _, server = live
    here = answered_here(server, monkeypatch)
    request = post(VALID)
    half = len(request) - len(VALID) // 2

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request[:half])
        deadline = time.monotonic() + 10
        # the ASGI round has begun once a connection holds a request cycle not yet answered
        while not any(c.cycle is not None and not c.cycle.response_complete
                      for c in list(server.server_state.connections)) and time.monotonic() < deadline:
            time.sleep(0.005)
        sock.sendall(request[half:])
        answers = split_answers(b"".join(iter(lambda: sock.recv(65536), b"")))

    assert here == [] and len(answers) == 1
    assert answers[0][0] == b"HTTP/1.1 200 OK" and json.loads(answers[0][2])["predictions"]


def test_concurrent_clients_each_get_the_answer_they_get_alone(live):
    port, _, _ = live
    bodies = [json.dumps({"instances": [{**PENGUIN, "body_mass_g": 3000.0 + 100 * i}] * (1 + i % 3)}).encode()
              for i in range(24)]
    alone = [json.loads(request(port, body=body)[2]) for body in bodies]
    got: dict[int, list] = {}
    start = threading.Barrier(len(bodies))

    def client(i):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        start.wait()
        for _ in range(5):
            conn.request("POST", "/predict", body=bodies[i], headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            got.setdefault(i, []).append((response.status, json.loads(response.read())))
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    # predicted together with others, each answer is its own to float rounding (tests/answers.py)
    assert all(got[i] == [(200, as_answered(alone[i]))] * 5 for i in range(len(bodies)))
    assert alone[0] != as_answered(alone[3])  # 3000 g and 3300 g, one instance each: told apart
