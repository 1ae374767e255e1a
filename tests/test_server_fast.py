"""The model server's routing, limits and routes, driven in-process through its ASGI app (no
sockets, no threads): the fast tier's view of `kfkit serve`. Hostile clients over real sockets
are in test_server_hostile.py.

Vertex AI's online prediction limits a request to 1.5 MB
(https://cloud.google.com/vertex-ai/docs/predictions/get-online-predictions#send-request), and
its custom-container contract names the routes and port in AIP_HEALTH_ROUTE, AIP_PREDICT_ROUTE,
AIP_HTTP_PORT and the model in AIP_STORAGE_URI
(https://cloud.google.com/vertex-ai/docs/predictions/custom-container-requirements).
"""

import asyncio
import json
import subprocess
import sys
from collections import Counter

import pytest

from kfkit.serving import http_app
from kfkit.serving.endpoints import LocalEndpoints
from kfkit.serving.server import Deployed, ModelServer, Router, make_http_server
from tests.answers import as_answered

PENGUIN = {"island": "Biscoe", "culmen_length_mm": 47.5, "culmen_depth_mm": 15.0, "flipper_length_mm": 218.0,
           "body_mass_g": 4950.0, "sex": "FEMALE"}
VERTEX_LIMIT = 1.5 * 1024 * 1024


def call(app, method: str, path: str, body: bytes = b"", *, content_length: bool = True, chunk: int = 0):
    """One request through the ASGI app; returns (status, headers, parsed JSON or text)."""
    headers = [(b"content-type", b"application/json")]
    if content_length:
        headers.append((b"content-length", str(len(body)).encode()))
    pieces = [body[i:i + chunk] for i in range(0, len(body), chunk)] if chunk and body else [body]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(pieces) - 1} for i, p in enumerate(pieces)]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": headers, "client": ("127.0.0.1", 1)}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    raw = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    answer_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    payload = json.loads(raw) if answer_headers.get("content-type") == "application/json" else raw.decode()
    return start["status"], answer_headers, payload


def body_of_size(size: int) -> bytes:
    """A valid prediction request padded with JSON whitespace to exactly `size` bytes."""
    core = json.dumps({"instances": [PENGUIN]}).encode()
    return core[:-1] + b" " * (size - len(core)) + b"}"


@pytest.fixture(scope="module")
def model_server(penguin_model):
    return ModelServer(model_dir=str(penguin_model), seed=1)


@pytest.fixture(scope="module")
def app(model_server):
    return http_app.make_app(model_server)


def test_the_body_limit_is_vertexs_1_5_mb():
    assert http_app.MAX_BODY_BYTES == VERTEX_LIMIT


@pytest.mark.parametrize("size, status", [(http_app.MAX_BODY_BYTES - 1, 200), (http_app.MAX_BODY_BYTES, 200),
                                          (http_app.MAX_BODY_BYTES + 1, 413)], ids=["under", "at", "over"])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_is_served_up_to_exactly_the_limit_and_refused_one_byte_over(app, size, status, framing):
    body = body_of_size(size)

    got, headers, payload = call(app, "POST", "/predict", body, content_length=framing == "content-length",
                                 chunk=0 if framing == "content-length" else 65536)

    assert len(body) == size
    assert got == status
    if status == 413:
        assert "1.5 MB" in payload["error"] and headers["connection"] == "close"
    else:
        assert len(payload["predictions"]) == 1
    assert call(app, "POST", "/predict", body_of_size(200))[0] == 200


def test_health_answers_get_and_head(app):
    assert call(app, "GET", "/health")[0] == 200
    assert call(app, "HEAD", "/health")[0] == 200


def test_a_bug_in_prediction_is_a_json_500_and_the_next_request_is_served(model_server, monkeypatch):
    app = http_app.make_app(model_server)
    monkeypatch.setattr(model_server, "predict", lambda body: 1 / 0)

    status, _, payload = call(app, "POST", "/predict", body_of_size(300))
    monkeypatch.undo()

    assert status == 500
    assert payload == {"error": "prediction failed: ZeroDivisionError: division by zero"}
    assert call(app, "POST", "/predict", body_of_size(300))[0] == 200


def test_vertex_aip_variables_set_the_routes_port_and_model(penguin_model, monkeypatch):
    monkeypatch.setenv("AIP_HEALTH_ROUTE", "/v1/endpoints/e/health")
    monkeypatch.setenv("AIP_PREDICT_ROUTE", "/v1/endpoints/e/deployedModels/m:predict")
    monkeypatch.setenv("AIP_HTTP_PORT", "9123")
    monkeypatch.setenv("AIP_STORAGE_URI", str(penguin_model))

    server = make_http_server()
    app = server.config.app

    assert server.config.port == 9123
    assert server.model_server.model_dir == str(penguin_model)
    assert call(app, "GET", "/v1/endpoints/e/health")[0] == 200
    status, _, payload = call(app, "POST", "/v1/endpoints/e/deployedModels/m:predict", body_of_size(300))
    assert status == 200 and payload["predictions"][0]["classes"]
    assert call(app, "POST", "/predict", body_of_size(300))[0] == 404


def test_a_new_deploy_is_served_after_reload_and_a_broken_state_keeps_the_old_one(tmp_path, penguin_model):
    endpoints = LocalEndpoints(tmp_path)
    endpoints.deploy("penguins", "penguins", "1", str(penguin_model))
    server = ModelServer(endpoint="penguins", local_root=str(tmp_path))
    app = http_app.make_app(server)
    assert server.reload_if_changed() is False

    endpoints.deploy("penguins", "penguins", "2", str(penguin_model), traffic_percent=100)
    switched = server.reload_if_changed()

    assert switched is True and server.router.revision == 2
    assert call(app, "POST", "/predict", body_of_size(300))[2]["modelVersionId"] == "2"
    endpoints.path("penguins").write_text("{not json")
    assert server.reload_if_changed() is False
    assert server.router.revision == 2
    assert call(app, "POST", "/predict", body_of_size(300))[0] == 200


def deployed(id_: str, traffic: int) -> Deployed:
    return Deployed(id_, "penguins", id_, traffic, loaded=None)


def test_routing_follows_the_traffic_split_90_10():
    router = Router([deployed("stable", 90), deployed("canary", 10)], seed=20261123)

    picks = Counter(router.pick().id for _ in range(20_000))

    # 20,000 draws at p = 0.1: standard deviation 0.0021; 5 of them either side
    assert abs(picks["canary"] / 20_000 - 0.10) < 0.0106
    assert picks["stable"] + picks["canary"] == 20_000


def test_routing_never_sends_to_a_version_with_no_traffic():
    router = Router([deployed("old", 0), deployed("new", 100), deployed("older", 0)], seed=3)

    assert {router.pick().id for _ in range(1000)} == {"new"}
    assert [d.id for d in router.deployed] == ["new"]


def test_an_endpoint_whose_versions_all_have_zero_traffic_still_serves_one():
    router = Router([deployed("a", 0), deployed("b", 0)], seed=3)

    assert router.pick().id == "a"


def test_a_one_percent_version_still_gets_its_share():
    router = Router([deployed("stable", 99), deployed("canary", 1)], seed=11)

    picks = Counter(router.pick().id for _ in range(20_000))

    # expected 200; 5 standard deviations (70) either side
    assert 130 <= picks["canary"] <= 270


def test_the_same_seed_routes_the_same_way_and_the_revision_is_kept():
    first = Router([deployed("a", 50), deployed("b", 50)], revision=7, seed=5)
    second = Router([deployed("a", 50), deployed("b", 50)], seed=5)

    assert [first.pick().id for _ in range(50)] == [second.pick().id for _ in range(50)]
    assert (first.revision, second.revision) == (7, 0)


# Requests GuardedProtocol reads in one turn of the event loop wait for its end and are predicted
# together (http_app's wait_turn / answer_waiting): each must get what it gets alone.

class Waiting:
    """What answer_waiting uses of a connection: its client, the server's open connections, and where
    its answer is written."""

    client = ("127.0.0.1", 1)

    def __init__(self, connections: set):
        self.answers = []
        self.connections = connections
        connections.add(self)

    def write_answer(self, status, body, extra, keep_alive):
        self.answers.append((status, json.loads(body), extra))


def one_turn(app, bodies: list[bytes]) -> list[tuple[int, dict, list | None]]:
    server_connections: set = set()
    connections = [Waiting(server_connections) for _ in bodies]

    async def turn():
        for connection, body in zip(connections, bodies):
            app.wait_turn(connection, [(b"content-length", str(len(body)).encode())], body, True)
        await asyncio.sleep(0)  # the loop's turn ends: the waiting are answered

    asyncio.run(turn())
    assert all(len(c.answers) == 1 for c in connections)
    return [c.answers[0] for c in connections]


def penguins(*masses: float) -> bytes:
    return json.dumps({"instances": [{**PENGUIN, "body_mass_g": m} for m in masses]}).encode()


TURN = [penguins(4950.0), penguins(3000.0, 6000.0, 4200.0), json.dumps({"instances": [{**PENGUIN, "sex": 1}]}).encode(),
        b'{"instances": [', penguins(3500.0), json.dumps({"instances": [{**PENGUIN, "island": None}]}).encode()]


def test_requests_read_in_one_turn_are_predicted_in_one_call_each_answered_as_alone(penguin_model, tmp_path,
                                                                                     monkeypatch):
    LocalEndpoints(tmp_path).deploy("penguins", "penguins", "1", str(penguin_model))
    server = ModelServer(endpoint="penguins", local_root=str(tmp_path), seed=1)
    app = http_app.make_app(server)
    alone = [call(app, "POST", "/predict", body) for body in TURN]
    loaded = server.router.deployed[0].loaded
    calls = []
    predict_arrays = loaded.predict_arrays
    monkeypatch.setattr(loaded, "predict_arrays", lambda features: calls.append(len(features["sex"]))
                        or predict_arrays(features))

    together = one_turn(app, TURN)

    assert calls == [6]  # the four valid requests' 1 + 3 + 1 + 1 instances, in one call
    assert "kfkit_predict_turns_total 1\nkfkit_predict_turn_requests_total 6" in "".join(
        line + "\n" for line in app.metrics.render().splitlines() if not line.startswith("#"))
    assert [(status, payload) for status, payload, _ in together] == [
        (status, as_answered(payload)) for status, _, payload in alone]
    # the rounding allowed is far finer than what tells two instances apart
    assert alone[0][2] != as_answered(alone[4][2])
    assert [status for status, _, _ in together] == [200, 200, 400, 400, 200, 200]
    assert "'sex'" in together[2][1]["error"] and "not valid JSON" in together[3][1]["error"]
    logged = [r for path in sorted((tmp_path / "request_logs" / "penguins").glob("*.jsonl"))
              for r in map(json.loads, path.read_text().splitlines())]
    # each request its own record, the turn's after the ones alone: 4 answered and 1 refused by the model each time
    turn_records = logged[len(logged) // 2:]
    assert [len(r.get("instances", [])) for r in turn_records if r["status"] == 200] == [1, 3, 1, 1]
    assert [r["status"] for r in turn_records] .count(400) == 1


def test_a_request_on_the_servers_only_connection_is_answered_without_waiting_for_the_turns_end(model_server):
    # no other connection can have a request read in this turn: waiting would only add a turn of the loop
    app = http_app.make_app(model_server)
    status, _, payload = call(app, "POST", "/predict", TURN[0])
    only = Waiting(set())
    shared: set = set()
    first, second = Waiting(shared), Waiting(shared)
    length = [(b"content-length", str(len(TURN[0])).encode())]

    async def turn():
        app.wait_turn(only, length, TURN[0], True)
        answered_at_once = list(only.answers)
        app.wait_turn(first, length, TURN[0], True)
        app.wait_turn(second, length, TURN[0], True)
        waited = first.answers + second.answers
        await asyncio.sleep(0)
        return answered_at_once, waited

    answered_at_once, waited = asyncio.run(turn())

    assert answered_at_once == [(status, payload, None)] and status == 200
    # the pair is one model call of 2 instances: its scores equal the lone call's to float rounding
    assert waited == [] and first.answers == second.answers == [(status, as_answered(payload), None)]
    assert "kfkit_predict_turns_total 2\nkfkit_predict_turn_requests_total 3" in "".join(
        line + "\n" for line in app.metrics.render().splitlines() if not line.startswith("#"))


@pytest.mark.parametrize("rate, kept", [(1.0, True), (0.0, False)])
def test_a_requests_instances_text_is_kept_only_when_the_request_log_may_record_it(penguin_model, tmp_path,
                                                                                   monkeypatch, rate, kept):
    LocalEndpoints(tmp_path).deploy("penguins", "penguins", "1", str(penguin_model))
    server = ModelServer(endpoint="penguins", local_root=str(tmp_path), seed=1, log_sample_rate=rate)
    read = []
    monkeypatch.setattr(http_app, "instances_text", lambda raw, body: read.append(raw))

    status, _, _ = call(http_app.make_app(server), "POST", "/predict", TURN[0])

    assert status == 200 and read == ([TURN[0]] if kept else [])


def test_a_turn_whose_one_call_fails_is_predicted_request_by_request(model_server, monkeypatch):
    app = http_app.make_app(model_server)
    alone = [call(app, "POST", "/predict", body) for body in TURN]
    loaded = model_server.router.deployed[0].loaded
    predict_arrays = loaded.predict_arrays

    def refuse_batches(features):
        if len(features["sex"]) > 3:
            raise RuntimeError("the batch failed")
        return predict_arrays(features)

    monkeypatch.setattr(loaded, "predict_arrays", refuse_batches)

    together = one_turn(app, TURN)

    assert [(status, payload) for status, payload, _ in together] == [
        (status, as_answered(payload)) for status, _, payload in alone]


def test_a_turn_with_a_replaced_predict_calls_it_for_each_request(model_server, monkeypatch):
    app = http_app.make_app(model_server)
    seen = []
    monkeypatch.setattr(model_server, "predict", lambda body: seen.append(len(body["instances"])) or 1 / 0)

    together = one_turn(app, TURN[:2])

    assert seen == [1, 3]
    assert [status for status, _, _ in together] == [500, 500]
    assert together[0][1] == {"error": "prediction failed: ZeroDivisionError: division by zero"}


def test_serve_runs_each_tensorflow_operation_on_its_calling_thread_unless_tensorflow_already_ran():
    code = ("from kfkit.cli import build_parser\n"
            "from kfkit.serving.model_io import serving_threads, tensorflow_runtime\n"
            "tf = tensorflow_runtime()\n"
            "default = build_parser().parse_args(['serve']).intra_op_threads\n"
            "from tensorflow.python.eager import context\n"
            "print(default, serving_threads(default), tf.config.threading.get_intra_op_parallelism_threads(),\n"
            "      tf.config.threading.get_inter_op_parallelism_threads(),\n"
            "      context.context().config.experimental.disable_thread_spinning)\n"
            "tf.constant(1.0) + 1\n"
            "print(serving_threads(3), tf.config.threading.get_intra_op_parallelism_threads())\n"
            "import os\n"
            "print(sorted(open(f'/proc/self/task/{t}/comm').read().strip() for t in os.listdir('/proc/self/task')\n"
            "             if open(f'/proc/self/task/{t}/comm').read().startswith('tf_Compute')))\n")

    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)

    # one inter-op thread (the OS names TensorFlow's pool threads tf_Compute), told not to spin
    assert run.stdout.split("\n")[:3] == ["1 True 1 1 True", "False 1", "['tf_Compute']"], run.stderr[-2000:]


def test_tensorflow_that_ran_already_keeps_its_inter_op_pool_as_it_is():
    code = ("from kfkit.serving.model_io import quiet_inter_op_pool, tensorflow_runtime\n"
            "tf = tensorflow_runtime()\n"
            "tf.constant(1.0) + 1\n"
            "from tensorflow.python.eager import context\n"
            "print(quiet_inter_op_pool(), context.context().config.experimental.disable_thread_spinning)\n")

    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)

    assert run.stdout.split("\n")[0] == "False False", run.stderr[-2000:]


def test_a_model_loaded_after_serve_sets_its_threads_runs_on_the_single_threaded_executor_with_the_same_answers(
        penguin_model):
    # a fresh process: TensorFlow's threads are fixed by its first run, and pytest's has run it
    code = ("import json, sys, numpy as np\n"
            "from kfkit.serving.model_io import LoadedModel, serving_threads, SINGLE_THREADED_EXECUTOR\n"
            "serving_threads(1)\n"
            "served, default = LoadedModel(sys.argv[1]), LoadedModel(sys.argv[1])\n"
            "print(default._flat_fn is default.fn)\n"
            "default._flat_fn = default.fn  # the signature's function, called flat on the default executor\n"
            "nodes = [n for n in served._flat_fn.graph.as_graph_def().node if 'PartitionedCall' in n.op]\n"
            "rows = json.loads(sys.argv[2])\n"
            "arrays = default.predict_arrays({k: np.array([r[k] for r in rows]) for k in default.signature})\n"
            "got = served.predict_arrays({k: np.array([r[k] for r in rows]) for k in served.signature})\n"
            "print(served._flat_fn is served.fn,\n"
            "      [n.attr['executor_type'].s.decode() == SINGLE_THREADED_EXECUTOR for n in nodes],\n"
            "      all(np.array_equal(got[k], arrays[k]) for k in arrays) and got.keys() == arrays.keys(),\n"
            "      sorted(set(arrays['classes'].tolist())) != [arrays['classes'][0]])\n")

    adelie = {"island": "Torgersen", "culmen_length_mm": 39.1, "culmen_depth_mm": 18.7, "flipper_length_mm": 181.0,
              "body_mass_g": 3750.0, "sex": "MALE"}
    rows = [PENGUIN, adelie, dict(PENGUIN, body_mass_g=3000.0), dict(adelie, island="Dream", sex="FEMALE")]

    run = subprocess.run([sys.executable, "-c", code, str(penguin_model), json.dumps(rows)], capture_output=True,
                         text=True, timeout=180)

    # both loaded after serving_threads(1) take it; the second is then put back on the default executor
    assert run.stdout.split("\n")[:2] == ["False", "False [True] True True"], run.stderr[-2000:]


def test_a_function_the_single_threaded_executor_answers_otherwise_is_left_on_the_default_one():
    import tensorflow as tf

    from kfkit.serving.model_io import on_calling_thread

    class Doubling:  # what on_calling_thread uses of a serving function
        captured_inputs: list = []

        def __init__(self, traced_shift):
            self.traced_shift = traced_shift

        def _call_flat(self, tensors, captures):
            return {"y": tensors[0] * 2.0 + (0.0 if tf.executing_eagerly() else self.traced_shift)}

    class Failing(Doubling):
        def _call_flat(self, tensors, captures):
            raise RuntimeError("no kernel for this executor")

    types, signature = {"float32": tf.float32}, {"x": "float32"}

    same = on_calling_thread(tf, Doubling(0.0), ["x"], types, signature)
    other = on_calling_thread(tf, Doubling(1.0), ["x"], types, signature)
    failing = on_calling_thread(tf, Failing(0.0), ["x"], types, signature)

    assert same is not None and same._call_flat([tf.constant([1.5])], same.captured_inputs)["y"].numpy().tolist() == [3.0]
    assert other is None and failing is None


def test_serve_passes_its_intra_op_threads_to_the_server(monkeypatch):
    from kfkit import cli
    from kfkit.serving import server as serving

    got = {}
    monkeypatch.setattr(serving, "serve", lambda **kwargs: got.update(kwargs))

    cli.main(["serve", "--endpoint", "penguins", "--intra-op-threads", "0"])

    assert got["intra_op_threads"] == 0


def test_a_prediction_logged_later_writes_its_record_only_when_its_caller_says(penguin_model, tmp_path):
    LocalEndpoints(tmp_path).deploy("penguins", "penguins", "1", str(penguin_model))
    server = ModelServer(endpoint="penguins", local_root=str(tmp_path), seed=1)
    log_dir = tmp_path / "request_logs" / "penguins"

    answer = server.predict({"instances": [PENGUIN]}, log_later=True)
    before = sorted(log_dir.glob("*.jsonl"))
    answer.log()

    assert answer["predictions"] and not any(p.stat().st_size for p in before)
    records = [json.loads(line) for p in sorted(log_dir.glob("*.jsonl")) for line in p.read_text().splitlines()]
    assert [r["instances"] for r in records] == [[PENGUIN]]


def test_serve_exempts_its_loaded_heap_from_the_garbage_collector(penguin_model):
    code = ("import gc, threading\n"
            "from kfkit.serving.server import make_http_server\n"
            "ready = threading.Event()\n"
            f"server = make_http_server(model_dir={str(penguin_model)!r}, port=0, ready=ready, freeze_heap=True)\n"
            "threading.Thread(target=server.run, daemon=True).start()\n"
            "assert ready.wait(120)\n"
            "print(gc.get_freeze_count() > 100000)\n"
            "server.should_exit = True\n")

    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)

    assert run.stdout.split("\n")[-2:] == ["True", ""], run.stderr[-2000:]


def test_serve_is_the_one_that_freezes_the_heap(monkeypatch):
    from kfkit.serving import server as serving

    got = {}
    monkeypatch.setattr(serving, "make_http_server", lambda **kwargs: got.update(kwargs) or type(
        "Stub", (), {"run": lambda self: None})())

    serving.serve(endpoint="penguins")

    assert got == {"endpoint": "penguins", "freeze_heap": True}


@pytest.mark.parametrize("size, calls", [(http_app.MAX_BODY_BYTES // 2, [2]), (http_app.MAX_BODY_BYTES // 2 + 1, [1, 1])],
                         ids=["two-at-the-bound", "one-byte-over"])
def test_a_turn_predicts_at_most_one_bodys_worth_of_bytes_in_one_call(model_server, monkeypatch, size, calls):
    app = http_app.make_app(model_server)
    loaded = model_server.router.deployed[0].loaded
    seen = []
    predict_arrays = loaded.predict_arrays
    monkeypatch.setattr(loaded, "predict_arrays", lambda features: seen.append(len(features["sex"]))
                        or predict_arrays(features))

    together = one_turn(app, [body_of_size(size), body_of_size(size)])

    assert seen == calls
    assert [status for status, _, _ in together] == [200, 200]


@pytest.mark.parametrize("answer", [
    {"predictions": [{"classes": ["a"], "scores": [0.5]}], "deployedModelId": "1", "model": "m", "modelVersionId": "2"},
    {"predictions": [1.5], "deployedModelId": "é \" \\ \u2028", "model": "", "modelVersionId": "10"},
    {"predictions": [], "deployedModelId": "1", "model": None, "modelVersionId": 2},  # not all str: made each time
    {"predictions": [3], "deployedModelId": "1", "model": ["a", {"b": 1.25}], "modelVersionId": "2"},
    {"predictions": [3]},
    {"predictions": [3], "model": "m", "deployedModelId": "1"},  # the same fields in another order
], ids=["answer", "escapes", "not-str", "unhashable", "predictions-alone", "other-order"])
def test_an_answers_text_is_the_encoders_whether_its_end_was_kept_or_made(answer):
    http_app._ANSWER_ENDS.clear()
    predictions_json = http_app.ENCODER.encode(answer["predictions"]).encode()
    expected = http_app.ENCODER.encode(answer).encode()

    first, second = (http_app.encode_answer(answer, predictions_json) for _ in range(2))

    assert first == second == expected
    kept = all(type(v) is str for k, v in answer.items() if k != "predictions")
    assert len(http_app._ANSWER_ENDS) == (1 if kept else 0)


def test_the_kept_answer_ends_are_bounded_and_an_answer_past_the_bound_is_still_exact(monkeypatch):
    monkeypatch.setattr(http_app, "ANSWER_ENDS_KEPT", 3)
    http_app._ANSWER_ENDS.clear()
    answers = [{"predictions": [i], "deployedModelId": str(i), "model": "m", "modelVersionId": "1"} for i in range(7)]

    texts = [http_app.encode_answer(a, http_app.ENCODER.encode(a["predictions"]).encode()) for a in answers]

    assert texts == [http_app.ENCODER.encode(a).encode() for a in answers]
    assert 1 <= len(http_app._ANSWER_ENDS) <= 3
