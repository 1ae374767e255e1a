"""What a hostile client can make `kfkit serve` and `kfkit log-sink` hold, in bytes and in time, and
who may read or write the sink. Every case ends with a valid request answered.

The limits' defaults are nginx's and Apache's (8 KB per header line, 32 KB of headers, 100 header
fields; mod_reqtimeout's minimum body rate); tests lower the time and byte limits where waiting out
the defaults would take minutes, never the logic that applies them.
"""

import http.client
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from kfkit.errors import ConfigError, KfkitError
from kfkit.serving import http_app, log_sink
from kfkit.serving.endpoints import LocalEndpoints
from kfkit.serving.log_sink import REQUEST_TYPE, RESPONSE_TYPE, make_http_server as make_sink, read_records
from kfkit.serving.request_logs import records
from kfkit.serving.server import make_http_server as make_serve

PENGUIN = {"island": "Biscoe", "culmen_length_mm": 47.5, "culmen_depth_mm": 15.0, "flipper_length_mm": 218.0,
           "body_mass_g": 4950.0, "sex": "FEMALE"}
VALID = json.dumps({"instances": [PENGUIN]}).encode()
TOKEN = "s3cret-token-0123456789abcdef"


@pytest.fixture(scope="module")
def model_root(tmp_path_factory, penguin_model):
    root = tmp_path_factory.mktemp("limits-root")
    LocalEndpoints(root).deploy("penguins", "penguins", "1", str(penguin_model))
    return root


def _serve(root, **kwargs):
    ready = threading.Event()
    server = make_serve(endpoint="penguins", local_root=str(root), port=0, ready=ready, **kwargs)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert ready.wait(60)
    return server, thread


@pytest.fixture
def serve(model_root):
    server, thread = _serve(model_root, max_connections_per_client=3)
    yield server.bound_port
    server.should_exit = True
    thread.join(30)


def predict(port, headers=None, body=VALID):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def answered_after(port, headers=None):
    status, data = predict(port, headers)
    assert status == 200 and json.loads(data)["predictions"], data
    return True


def exchange(port, payload: bytes, timeout=5.0) -> bytes:
    """Send raw bytes, read until the server closes (a reset after its answer counts as closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def status_and_error(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)["error"]


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


# --- headers: bytes and count ------------------------------------------------------------------------

@pytest.mark.parametrize("extra, named", [
    ({"X-Big": "a" * 9000}, "header 'X-Big' is over 8192 bytes"),
    ({f"X-H{i}": "v" for i in range(150)}, "at most 100 headers"),
    ({f"X-Part{i}": "b" * 7000 for i in range(6)}, "request headers are over 32768 bytes"),
])
def test_serve_refuses_oversized_or_too_many_headers_with_431_naming_the_limit(serve, extra, named):
    head = "".join(f"{k}: {v}\r\n" for k, v in extra.items())
    payload = (f"POST /predict HTTP/1.1\r\nHost: x\r\n{head}Content-Type: application/json\r\n"
               f"Content-Length: {len(VALID)}\r\n\r\n").encode() + VALID

    status, error = status_and_error(exchange(serve, payload))

    assert status == 431 and named in error
    assert answered_after(serve)


def test_serve_refuses_a_request_target_over_the_line_limit(serve):
    status, error = status_and_error(exchange(serve, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"))

    assert status == 431 and "request target is over 8192 bytes" in error
    assert answered_after(serve)


@pytest.mark.parametrize("make", ["serve", "sink"])
def test_a_64_mb_header_line_is_cut_off_without_the_server_holding_it(make, serve, sink):
    port = serve if make == "serve" else int(sink[0].rsplit(":", 1)[1])
    before = rss_bytes()
    chunk = b"a" * (1 << 20)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Bomb: ")
        try:
            for _ in range(64):
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed the connection part way: what it should do
        held = rss_bytes() - before  # measured while the connection is open
        sock.settimeout(5)
        try:
            answer = sock.recv(65536)  # 431, or the close; a timeout would mean the server still waits
        except ConnectionResetError:
            answer = b""

    assert held < 24 * 1024 * 1024
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431")
    if make == "serve":
        assert answered_after(serve)
    else:
        assert post(sink, REQUEST, event("after-bomb", REQUEST_TYPE))[0] == 200


# --- bodies: a minimum rate ----------------------------------------------------------------------------

def test_a_trickled_body_is_cut_off_with_408_once_the_grace_period_is_over(serve, monkeypatch):
    monkeypatch.setattr(http_app, "BODY_GRACE_S", 0.5)
    monkeypatch.setattr(http_app, "MIN_BODY_RATE", 200)
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", serve), timeout=0.1) as sock:
        sock.sendall(f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: {len(VALID)}\r\n\r\n".encode())
        answer = b""
        for byte in VALID:  # one byte per 0.1 s: 10 bytes/s, under the rate; the timeout paces it
            try:
                sock.sendall(bytes([byte]))
                answer += sock.recv(65536)
            except socket.timeout:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if answer:
                break

    status, error = status_and_error(answer)
    assert status == 408 and "slower than 200 bytes/s" in error
    assert time.monotonic() - started < 5
    assert answered_after(serve)


def test_a_body_at_a_steady_rate_above_the_minimum_is_read_whole(serve, monkeypatch):
    monkeypatch.setattr(http_app, "BODY_GRACE_S", 0.2)
    monkeypatch.setattr(http_app, "MIN_BODY_RATE", 100)
    with socket.create_connection(("127.0.0.1", serve), timeout=5) as sock:
        sock.sendall(f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: {len(VALID)}\r\n"
                     "Connection: close\r\n\r\n".encode())
        for i in range(0, len(VALID), 40):  # 40 bytes per 0.05 s: 800 bytes/s, well over the minimum
            sock.sendall(VALID[i:i + 40])
            sock.settimeout(0.05)
            try:
                sock.recv(1, socket.MSG_PEEK)
            except socket.timeout:
                pass
        sock.settimeout(10)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk

    assert answer.startswith(b"HTTP/1.1 200")


# --- connections per client ------------------------------------------------------------------------------

def test_one_client_holds_at_most_its_share_of_connections_and_others_are_still_served(serve):
    held = [socket.create_connection(("127.0.0.1", serve), timeout=5) for _ in range(3)]
    try:
        answer = exchange(serve, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        status, error = status_and_error(answer)
        assert status == 503 and "holds 3 connections" in error
    finally:
        for sock in held:
            sock.close()

    assert answered_after(serve)


# --- a token on kfkit serve --------------------------------------------------------------------------------

def test_serve_with_a_token_answers_predictions_only_to_its_holder(model_root, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    server, thread = _serve(model_root, token_file=str(token_file))
    port = server.bound_port
    try:
        assert predict(port)[0] == 401
        assert predict(port, {"Authorization": "Bearer " + TOKEN[:-1] + "x"})[0] == 401
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/health")
        assert conn.getresponse().status == 200  # probes need no token
        conn.close()
        assert answered_after(port, {"Authorization": "Bearer " + TOKEN})
    finally:
        server.should_exit = True
        thread.join(30)


def test_a_token_file_too_short_to_be_a_secret_is_refused(model_root, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("abc")

    with pytest.raises(ConfigError, match="is 3 characters; use at least 16"):
        make_serve(endpoint="penguins", local_root=str(model_root), port=0, token_file=str(token_file))


# --- the log sink ------------------------------------------------------------------------------------------

REQUEST = {"instances": [{"island": "Biscoe", "bill_length_mm": 45.1, "id": "r1"}]}
RESPONSE = {"predictions": [{"classes": "Gentoo", "scores": [0.1, 0.1, 0.8]}]}


def event(event_id, kind, service="penguins", version="2"):
    return {"ce-specversion": "1.0", "ce-id": event_id, "ce-type": kind, "ce-inferenceservicename": service,
            "ce-annotations": json.dumps({"kfkit.io/model": "penguins", "kfkit.io/model-version": version}),
            "content-type": "application/json"}


def _sink(root, **kwargs):
    ready = threading.Event()
    server = make_sink(local_root=str(root), port=0, ready=ready, **kwargs)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert ready.wait(30)
    return server, thread


@pytest.fixture
def sink(tmp_path):
    server, thread = _sink(tmp_path)
    yield f"http://127.0.0.1:{server.bound_port}", server.sink, tmp_path
    server.should_exit = True
    thread.join(10)


def post(sink, body, headers, path="/"):
    url = sink[0] if isinstance(sink, tuple) else sink
    conn = http.client.HTTPConnection(url.split("//")[1], timeout=10)
    conn.request("POST", path, body=json.dumps(body).encode(), headers=headers)
    response = conn.getresponse()
    answer = json.loads(response.read() or b"{}")
    conn.close()
    return response.status, answer


def logged(root, service="penguins"):
    return list(records(root / "request_logs" / service, 0, 4e9))


def test_waiting_halves_are_bounded_in_bytes_the_oldest_evicted_first(sink, monkeypatch):
    url, state, root = sink
    monkeypatch.setattr(log_sink, "PENDING_MAX_BYTES", 20_000)
    for i in range(30):
        assert post(url, {"instances": [{"island": "x" * 4000, "id": str(i)}]}, event(f"big-{i}", REQUEST_TYPE))[0] == 200

    assert state._pending_bytes <= 20_000 and len(state._pending) <= 5
    assert state.dropped >= 25
    # the newest half still pairs; the oldest is gone
    assert post(url, RESPONSE, event("big-29", RESPONSE_TYPE)) == (200, {"logged": True, "model_version": "2"})
    assert post(url, RESPONSE, event("big-0", RESPONSE_TYPE))[1] == {"logged": False, "waiting_for": "request"}


def test_open_log_files_are_bounded_and_a_closed_ones_service_appends_again(sink, monkeypatch):
    url, state, root = sink
    monkeypatch.setattr(log_sink, "MAX_OPEN_LOGS", 2)
    services = [f"svc-{i}" for i in range(5)] + ["svc-0"]
    for n, service in enumerate(services):
        post(url, REQUEST, event(f"e{n}", REQUEST_TYPE, service))
        assert post(url, RESPONSE, event(f"e{n}", RESPONSE_TYPE, service))[1]["logged"] is True

    assert len(state._logs) == 2
    assert len(logged(root, "svc-0")) == 2 and len(logged(root, "svc-4")) == 1


def test_distinct_services_are_capped_without_an_allowlist_naming_the_flag(sink, monkeypatch):
    url, state, root = sink
    monkeypatch.setattr(log_sink, "MAX_SERVICES", 3)
    for service in ("a-1", "a-2", "a-3"):
        assert post(url, REQUEST, event("e", REQUEST_TYPE, service))[0] == 200

    status, answer = post(url, REQUEST, event("e", REQUEST_TYPE, "a-4"))

    assert status == 400 and "at most 3" in answer["error"] and "--inference-service" in answer["error"]
    assert not (root / "request_logs" / "a-4").exists()
    assert post(url, RESPONSE, event("e", RESPONSE_TYPE, "a-1"))[1]["logged"] is True


def test_a_slow_records_read_does_not_stop_events_being_accepted(sink, monkeypatch):
    url, state, root = sink
    from kfkit.serving import request_logs
    reading, posted = threading.Event(), threading.Event()

    def slow_records(log_dir, start, end):
        reading.set()
        assert posted.wait(20), "an event was not accepted while /records was being read"
        yield {"timestamp": 1.0, "status": 200}

    monkeypatch.setattr(request_logs, "records", slow_records)
    answers = []
    reader = threading.Thread(target=lambda: answers.append(urllib.request.urlopen(
        f"{url}/records?inferenceservice=penguins&start=0&end=100", timeout=30).read()))
    reader.start()
    assert reading.wait(10)

    assert post(url, REQUEST, event("during-read", REQUEST_TYPE))[0] == 200
    posted.set()
    reader.join(30)
    assert answers == [b'{"timestamp":1.0,"status":200}\n']


def test_records_beyond_the_byte_bound_end_with_a_truncation_the_reader_refuses(sink, monkeypatch):
    url, state, root = sink
    for n in range(5):
        post(url, REQUEST, event(f"t{n}", REQUEST_TYPE))
        post(url, RESPONSE, event(f"t{n}", RESPONSE_TYPE))
    monkeypatch.setattr(log_sink, "MAX_RECORDS_BYTES", 100)
    monkeypatch.setattr(log_sink, "RECORDS_BATCH", 1)

    with pytest.raises(KfkitError, match="more than 100 bytes of records for penguins in this window"):
        list(read_records(url, "penguins", 0, 4e9))


def test_an_event_whose_record_could_not_be_written_is_a_500_not_logged_true(sink, monkeypatch):
    url, state, root = sink
    from kfkit.serving.server import RequestLog

    post(url, REQUEST, event("w1", REQUEST_TYPE))
    monkeypatch.setattr(RequestLog, "write", lambda self, *a, **k: (_ for _ in ()).throw(OSError(28, "No space left")))
    status, answer = post(url, RESPONSE, event("w1", RESPONSE_TYPE))
    monkeypatch.undo()

    assert status == 500 and "No space left" in answer["error"]
    post(url, REQUEST, event("w2", REQUEST_TYPE))
    assert post(url, RESPONSE, event("w2", RESPONSE_TYPE))[1]["logged"] is True


def test_a_record_the_log_declines_to_write_is_never_acknowledged(sink, monkeypatch):
    url, state, root = sink
    from kfkit.serving.server import RequestLog

    post(url, REQUEST, event("d1", REQUEST_TYPE))
    monkeypatch.setattr(RequestLog, "write", lambda self, *a, **k: False)
    status, answer = post(url, RESPONSE, event("d1", RESPONSE_TYPE))

    assert status == 500 and "could not be written" in answer["error"]


# --- the sink's token ----------------------------------------------------------------------------------------

@pytest.fixture
def guarded_sink(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    server, thread = _sink(tmp_path, token_file=str(token_file))
    yield f"http://127.0.0.1:{server.bound_port}", server.sink, tmp_path
    server.should_exit = True
    thread.join(10)


def test_a_sink_with_a_token_refuses_events_and_reads_without_it_and_writes_nothing(guarded_sink):
    url, state, root = guarded_sink

    assert post(url, REQUEST, event("x", REQUEST_TYPE))[0] == 401
    assert post(url, REQUEST, {**event("x", REQUEST_TYPE), "Authorization": "Bearer wrong-token-0123456789"})[0] == 401
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}/records?inferenceservice=penguins&start=0&end=100", timeout=10)
    assert refused.value.code == 401 and refused.value.headers["WWW-Authenticate"] == "Bearer"
    assert state._pending == {} and not (root / "request_logs" / "penguins").exists()
    assert urllib.request.urlopen(f"{url}/health", timeout=10).status == 200


def test_kserves_logger_passes_the_token_in_its_url_and_the_canary_reads_with_the_same_url(guarded_sink):
    url, state, root = guarded_sink

    assert post(url, REQUEST, event("k1", REQUEST_TYPE), path=f"/?token={TOKEN}")[0] == 200
    assert post(url, RESPONSE, event("k1", RESPONSE_TYPE), path=f"/?token={TOKEN}")[1]["logged"] is True
    assert post(url, REQUEST, {**event("k2", REQUEST_TYPE), "Authorization": f"Bearer {TOKEN}"})[0] == 200
    rows = list(read_records(f"{url}/?token={TOKEN}", "penguins", 0, 4e9))
    assert len(rows) == 1 and rows[0]["model_version"] == "2"


def test_a_sink_without_a_token_will_not_listen_beyond_loopback(tmp_path):
    with pytest.raises(ConfigError, match="--host 0.0.0.0 without --token-file"):
        make_sink(local_root=str(tmp_path), host="0.0.0.0", port=0)


def test_the_sink_refuses_one_clients_connections_past_its_share(tmp_path):
    server, thread = _sink(tmp_path, max_connections_per_client=2)
    port = server.bound_port
    try:
        held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
        status, error = status_and_error(exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"))
        for sock in held:
            sock.close()
        assert status == 503 and "holds 2 connections" in error
        assert post(f"http://127.0.0.1:{port}", REQUEST, event("after", REQUEST_TYPE))[0] == 200
    finally:
        server.should_exit = True
        thread.join(10)


def test_fd_count_stays_flat_under_many_services(sink, monkeypatch):
    url, state, root = sink
    monkeypatch.setattr(log_sink, "MAX_OPEN_LOGS", 4)
    before = len(os.listdir("/proc/self/fd"))
    for n in range(40):
        post(url, REQUEST, event(f"f{n}", REQUEST_TYPE, f"svc-{n}"))
        post(url, RESPONSE, event(f"f{n}", RESPONSE_TYPE, f"svc-{n}"))

    assert len(os.listdir("/proc/self/fd")) - before <= 8
