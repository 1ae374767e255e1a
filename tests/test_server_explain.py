import json

import pytest

from kfkit.serving import http_app
from kfkit.serving.server import ModelServer, explain_route_for
from tests.test_server_fast import PENGUIN, call

ADELIE = {"island": "Torgersen", "culmen_length_mm": 39.1, "culmen_depth_mm": 18.7, "flipper_length_mm": 181.0,
          "body_mass_g": 3750.0, "sex": "MALE"}


@pytest.fixture(scope="module")
def app(penguin_model):
    return http_app.make_app(ModelServer(model_dir=str(penguin_model), seed=1))


def post(app, path, body):
    return call(app, "POST", path, json.dumps(body).encode())


def test_explain_answers_vertexs_shape_with_attributions_that_add_up(app):
    status, _, payload = post(app, "/explain", {"instances": [PENGUIN, ADELIE]})

    assert status == 200 and len(payload["explanations"]) == 2
    _, _, predicted = post(app, "/predict", {"instances": [PENGUIN, ADELIE]})
    assert payload["predictions"] == predicted["predictions"]
    for explanation, prediction in zip(payload["explanations"], payload["predictions"]):
        attribution = explanation["attributions"][0]
        assert set(attribution["featureAttributions"]) == set(PENGUIN)
        assert attribution["instanceOutputValue"] == pytest.approx(max(prediction["scores"]), abs=1e-6)
        assert attribution["outputDisplayName"] == prediction["classes"]  # the top class is the one explained
        assert sum(attribution["featureAttributions"].values()) == pytest.approx(
            attribution["instanceOutputValue"] - attribution["baselineOutputValue"], abs=1e-5)


def test_a_baseline_in_the_request_is_used_and_typed_like_an_instance(app):
    override = {"metadata": {"inputs": {name: {"inputBaselines": [value]} for name, value in PENGUIN.items()}}}

    _, _, same = post(app, "/explain", {"instances": [PENGUIN], "explanationSpecOverride": override})
    bad = post(app, "/explain", {"instances": [PENGUIN], "explanationSpecOverride": {
        "metadata": {"inputs": {"body_mass_g": {"inputBaselines": ["heavy"]}}}}})

    # the instance is its own baseline: nothing to attribute
    assert all(abs(v) < 1e-6 for v in same["explanations"][0]["attributions"][0]["featureAttributions"].values())
    assert bad[0] == 400 and "'body_mass_g' expects a number" in bad[2]["error"]


def test_the_path_count_is_the_requests_budget_capped_at_vertexs_50(app):
    spec = {"parameters": {"sampledShapleyAttribution": {"pathCount": 51}}}

    status, _, payload = post(app, "/explain", {"instances": [PENGUIN], "explanationSpecOverride": spec})

    assert status == 400 and "pathCount must be an integer from 1 to 50; got 51" in payload["error"]


def test_vertex_predict_route_has_its_explain_sibling():
    assert explain_route_for("/v1/endpoints/e/deployedModels/m:predict") == "/v1/endpoints/e/deployedModels/m:explain"
    assert explain_route_for("/predict") == "/explain"
