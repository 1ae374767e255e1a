"""`kfkit serve` speaks KServe's v1 data plane beside Vertex's contract.

KServe's v1 protocol (kserve.github.io, "V1 Protocol"; routes in kserve 0.21's
kserve/protocol/rest/v1_endpoints.py):
  GET  /v1/models                    -> {"models": [<model_name>]}
  GET  /v1/models/<model_name>       -> {"name": <model_name>, "ready": bool}
  POST /v1/models/<model_name>:predict  {"instances": []} or {"inputs": []} -> {"predictions": []}
  POST /v1/models/<model_name>:explain  {"instances": []} or {"inputs": []} -> {"predictions": [], "explanations": []}
An unknown name is KServe's ModelNotFound, 404 {"error": "Model with name <name> does not exist."}
(kserve/errors.py).
"""

import json

import pytest

from kfkit.serving import http_app
from kfkit.serving.server import ModelServer
from tests.test_server_explain import ADELIE
from tests.test_server_fast import PENGUIN, call


@pytest.fixture(scope="module")
def app(penguin_model):
    return http_app.make_app(ModelServer(model_dir=str(penguin_model), seed=1), kserve_model="penguins")


def post(app, path, body):
    return call(app, "POST", path, json.dumps(body).encode())


def test_v1_predict_answers_predictions_only(app):
    status, _, payload = post(app, "/v1/models/penguins:predict", {"instances": [PENGUIN, ADELIE]})

    _, _, vertex = post(app, "/predict", {"instances": [PENGUIN, ADELIE]})
    assert status == 200 and set(payload) == {"predictions"}
    assert payload["predictions"] == vertex["predictions"]


def test_v1_explain_answers_predictions_and_explanations(app):
    status, _, payload = post(app, "/v1/models/penguins:explain", {"instances": [PENGUIN, ADELIE]})

    _, _, vertex = post(app, "/explain", {"instances": [PENGUIN, ADELIE]})
    assert status == 200 and set(payload) == {"predictions", "explanations"}
    assert payload["predictions"] == vertex["predictions"]
    assert payload["explanations"] == vertex["explanations"]  # seeded paths: the same attributions
    attribution = payload["explanations"][0]["attributions"][0]
    assert sum(attribution["featureAttributions"].values()) == pytest.approx(
        attribution["instanceOutputValue"] - attribution["baselineOutputValue"], abs=1e-5)


def test_tensorflow_servings_inputs_rows_and_columns_are_instances(app):
    columns = {name: [PENGUIN[name], ADELIE[name]] for name in PENGUIN}

    _, _, by_instances = post(app, "/v1/models/penguins:predict", {"instances": [PENGUIN, ADELIE]})
    _, _, by_rows = post(app, "/v1/models/penguins:predict", {"inputs": [PENGUIN, ADELIE]})
    _, _, by_columns = post(app, "/v1/models/penguins:predict", {"inputs": columns})
    ragged = post(app, "/v1/models/penguins:predict", {"inputs": {"island": ["Biscoe"], "sex": []}})

    assert by_rows == by_instances == by_columns
    assert ragged[0] == 400 and "one length" in ragged[2]["error"]


def test_model_list_and_readiness(app):
    assert call(app, "GET", "/v1/models")[::2] == (200, {"models": ["penguins"]})
    assert call(app, "GET", "/v1/models/penguins")[::2] == (200, {"name": "penguins", "ready": True})


def test_another_model_name_is_not_found_as_kserve_says_it(app):
    status, _, payload = post(app, "/v1/models/iris:predict", {"instances": [PENGUIN]})

    assert (status, payload) == (404, {"error": "Model with name iris does not exist."})


def test_the_verbs_take_post_only_and_bad_instances_are_400(app):
    status, headers, _ = call(app, "GET", "/v1/models/penguins:explain")
    bad = post(app, "/v1/models/penguins:predict", {"instances": [{**PENGUIN, "body_mass_g": "heavy"}]})

    assert status == 405 and headers["allow"] == "POST"
    assert bad[0] == 400 and "'body_mass_g' expects a number" in bad[2]["error"]


def test_without_a_model_name_there_are_no_v1_routes(penguin_model):
    app = http_app.make_app(ModelServer(model_dir=str(penguin_model), seed=1))

    assert post(app, "/v1/models/penguins:predict", {"instances": [PENGUIN]})[0] == 404


def test_kfkit_serve_started_as_kserves_explainer_answers_the_explain_verb(penguin_model, tmp_path):
    import urllib.request

    from tests.serve_process import kfkit_serve

    with kfkit_serve(penguin_model, tmp_path, kserve_explainer="penguins") as (process, port):
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models/penguins:explain",
                                         data=json.dumps({"instances": [PENGUIN]}).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = json.loads(response.read())

    assert set(payload) == {"predictions", "explanations"} and len(payload["explanations"]) == 1
    assert set(payload["explanations"][0]["attributions"][0]["featureAttributions"]) == set(PENGUIN)
