import json

import numpy as np
import pytest

from kfkit.components.explain.explain import baseline_of, explain, read_features
from kfkit.shapley import model_outputs, sampled_shapley
from kfkit.errors import ConfigError


def test_sampled_shapley_of_a_linear_function_is_exact():
    weights = np.array([1.0, -2.0, 0.5])

    def predict(batch):
        x = np.stack([batch["a"], batch["b"], batch["c"]], axis=1)
        return np.stack([x @ weights, -(x @ weights)], axis=1)

    instances = {"a": np.array([1.0, 2.0]), "b": np.array([3.0, 0.0]), "c": np.array([0.0, 4.0])}
    baseline = {"a": 0.0, "b": 1.0, "c": 2.0}

    result = sampled_shapley(predict, instances, baseline, path_count=3)

    # row 0 scores higher on the second output (its negation), row 1 on the first
    assert result.output_index.tolist() == [1, 0]
    assert result.values == pytest.approx(np.array([[-1.0, 4.0, 1.0], [2.0, 2.0, 1.0]]))
    assert result.standard_errors == pytest.approx(np.zeros((2, 3)))  # no interaction: every path agrees


@pytest.fixture(scope="module")
def penguin_explained(penguin_model, penguin_splits):
    return explain(penguin_model, penguin_splits["test"], path_count=20, max_rows=12)


def test_attributions_add_up_to_the_prediction_minus_the_baselines(penguin_explained, penguin_model, penguin_splits):
    from kfkit.serving.model_io import LoadedModel
    model = LoadedModel(penguin_model)
    instances = read_features(penguin_splits["test"], model.spec, max_rows=12)
    scores = model_outputs(model)(instances)
    baseline_scores = model_outputs(model)({k: np.array([v], dtype=instances[k].dtype)
                                            for k, v in penguin_explained["baseline"].items()})

    assert max(e["instanceOutputValue"] - e["baselineOutputValue"] for e in penguin_explained["attributions"]) > 0.5
    for row, entry in enumerate(penguin_explained["attributions"]):
        index = entry["outputIndex"][0]
        assert entry["instanceOutputValue"] == pytest.approx(scores[row].max(), abs=1e-6)
        assert entry["baselineOutputValue"] == pytest.approx(baseline_scores[0, index], abs=1e-6)
        # efficiency holds on every path, so only float rounding separates the sum from the difference
        assert sum(entry["featureAttributions"].values()) == pytest.approx(
            entry["instanceOutputValue"] - entry["baselineOutputValue"], abs=1e-5)


def test_global_importance_is_the_mean_absolute_attribution(penguin_explained):
    rows = penguin_explained["attributions"]
    features = list(rows[0]["featureAttributions"])

    expected = {f: np.mean([abs(r["featureAttributions"][f]) for r in rows]) for f in features}

    assert penguin_explained["rows"] == 12 == len(rows)
    assert penguin_explained["feature_importance"] == pytest.approx(expected)
    # most important first; the sum's order may differ from np.mean's in the last bit, so the order is
    # read from the component's own values, each already matched to the mean above
    importance = list(penguin_explained["feature_importance"].values())
    assert importance == sorted(importance, reverse=True) and len(set(importance)) == len(importance)
    json.dumps(penguin_explained)  # the component writes it as JSON


def test_sampled_shapley_agrees_with_shaps_exact_explainer_on_the_penguin_model(penguin_model, penguin_splits):
    import shap  # the dev extra has it: CI runs this comparison
    from kfkit.serving.model_io import LoadedModel
    model = LoadedModel(penguin_model)
    predict = model_outputs(model)
    every_row = read_features(penguin_splits["test"], model.spec)
    baseline = baseline_of(every_row, model.spec)
    features = list(every_row)
    # rows of another species than the baseline's: there every attribution is far from zero
    baseline_class = predict({f: np.array([baseline[f]], dtype=every_row[f].dtype) for f in features})[0].argmax()
    rows = np.flatnonzero(predict(every_row).argmax(axis=1) != baseline_class)[:6]
    instances = {f: values[rows] for f, values in every_row.items()}
    # shap wants one numeric matrix: categories as codes into the values seen here
    vocab = {f: sorted(set(instances[f].tolist()) | {baseline[f]}) for f in features if instances[f].dtype == object}

    def encode(columns):
        return np.stack([[vocab[f].index(v) for v in columns[f]] if f in vocab else columns[f].astype(np.float64)
                         for f in features], axis=1)

    def decode(matrix):
        return {f: (np.array([vocab[f][int(c)] for c in matrix[:, j]], dtype=object) if f in vocab
                    else matrix[:, j].astype(instances[f].dtype)) for j, f in enumerate(features)}

    ours = sampled_shapley(predict, instances, baseline, path_count=200, seed=3)
    background = encode({f: np.array([baseline[f]], dtype=instances[f].dtype) for f in features})
    reference = shap.explainers.Exact(lambda m: predict(decode(m)), shap.maskers.Independent(background))(encode(instances))

    exact = reference.values[np.arange(len(ours.values)), :, ours.output_index]
    # the sampled estimate is unbiased: within 4 standard errors (plus float32 noise) of the exact values
    assert np.all(np.abs(ours.values - exact) <= 4 * ours.standard_errors + 1e-4)
    assert exact.sum(axis=1) == pytest.approx(ours.values.sum(axis=1), abs=1e-5)
    assert len(rows) == 6 and np.abs(exact).max(axis=1).min() > 0.05


def test_path_count_below_one_is_refused(penguin_model, penguin_splits):
    with pytest.raises(ConfigError, match="path_count and step_count must be at least 1"):
        explain(penguin_model, penguin_splits["test"], path_count=0)


def test_explain_component_writes_attributions_and_importance(tmp_path, penguin_model, penguin_splits):
    from kfp.dsl import Artifact, Dataset, Metrics, Model

    from kfkit.components.explain.component import explain_model
    attributions, importance = Artifact(uri=str(tmp_path / "attributions.json")), Metrics(uri=str(tmp_path / "m"))

    explain_model.python_func(model=Model(uri=str(penguin_model)), data=Dataset(uri=str(penguin_splits["test"])),
                              attributions=attributions, importance=importance, path_count=5, max_rows=4)

    written = json.loads((tmp_path / "attributions.json").read_text())
    assert written["rows"] == 4 == attributions.metadata["rows"]
    assert {k: importance.metadata[k] for k in written["feature_importance"]} == written["feature_importance"]


def test_explain_stores_the_global_importance_with_the_registered_mlflow_version(tmp_path, penguin_model,
                                                                               penguin_splits):
    from kfp.dsl import Artifact, Dataset, Metrics, Model
    from mlflow import MlflowClient

    from kfkit.adapters.mlflow_registry import MlflowRegistry
    from kfkit.components.explain.component import explain_model
    from kfkit.components.register.register import register_model

    root = str(tmp_path / "root")
    register_model(str(penguin_model), model_name="penguins", backend="local", local_root=root, task_id="first")
    registered = register_model(str(penguin_model), model_name="penguins", backend="local", local_root=root,
                                task_id="second", blessed=False)
    attributions = Artifact(uri=str(tmp_path / "attributions.json"))

    explain_model.python_func(model=Model(uri=str(penguin_model)), data=Dataset(uri=str(penguin_splits["test"])),
                              attributions=attributions, importance=Metrics(uri=str(tmp_path / "m")), path_count=5,
                              max_rows=4, registered_model=Artifact(uri=registered["resourceName"], metadata=registered),
                              local_root=root)

    written = json.loads((tmp_path / "attributions.json").read_text())
    client = MlflowClient(tracking_uri=MlflowRegistry(root).uri)
    tagged = {str(v.version): v.tags.get("kfkit.feature_importance")
              for v in client.search_model_versions("name='penguins'")}
    assert tagged["1"] is None, "only the version explained carries it"
    assert json.loads(tagged[registered["version"]]) == {k: round(v, 6) for k, v in written["feature_importance"].items()}
    run_id = client.get_model_version("penguins", registered["version"]).run_id
    assert [f.path for f in client.list_artifacts(run_id, "explanation")] == ["explanation/attributions.json"]


def test_a_feature_importance_too_long_for_a_tag_keeps_the_largest_and_counts_the_rest(tmp_path, penguin_model):
    from mlflow import MlflowClient

    from kfkit.adapters.mlflow_registry import MlflowRegistry
    from kfkit.components.register.register import register_model

    root = str(tmp_path / "root")
    registered = register_model(str(penguin_model), model_name="penguins", backend="local", local_root=root)
    importance = {f"feature_{i:04d}_with_a_long_name": 1.0 / (i + 1) for i in range(400)}
    (tmp_path / "a.json").write_text("{}")

    MlflowRegistry(root).attach_explanation("penguins", registered["version"], importance, tmp_path / "a.json")

    tag = MlflowClient(tracking_uri=MlflowRegistry(root).uri).get_model_version("penguins", "1").tags[
        "kfkit.feature_importance"]
    kept = json.loads(tag)
    assert len(tag) <= 5000
    assert list(kept)[:2] == ["feature_0000_with_a_long_name", "feature_0001_with_a_long_name"]
    assert kept["..."] == 400 - (len(kept) - 1)


def test_integrated_gradients_of_a_linear_function_is_exact_on_the_numbers():
    from kfkit.components.explain.gradients import integrated_gradients
    weights = {"a": 2.0, "b": -1.0}

    def gradient(batch, index):
        value = weights["a"] * batch["a"] + weights["b"] * batch["b"] + (batch["colour"] == "red")
        return value[:, None], {name: np.full(len(value), w) for name, w in weights.items()}

    instances = {"a": np.array([1.0, 3.0]), "b": np.array([2.0, np.nan]), "colour": np.array(["red", "blue"], dtype=object)}

    result = integrated_gradients(gradient, instances, {"a": 0.0, "b": 1.0, "colour": "blue"}, ["a", "b"], steps=4)

    # a null number has no path: no attribution, and it stays null
    assert result.features == ["a", "b"] and result.values.tolist() == [[2.0, -1.0], [6.0, 0.0]]


def test_integrated_gradients_on_the_penguin_model_add_up_within_the_reported_gap(penguin_model, penguin_splits):
    out = explain(penguin_model, penguin_splits["test"], method="integrated_gradients", step_count=64, max_rows=8)

    rows = out["attributions"]
    assert set(rows[0]["featureAttributions"]) == {"culmen_length_mm", "culmen_depth_mm", "flipper_length_mm", "body_mass_g"}
    for row in rows:
        gap = sum(row["featureAttributions"].values()) - (row["instanceOutputValue"] - row["baselineOutputValue"])
        assert abs(gap) == pytest.approx(row["approximationError"], abs=1e-9)
    assert max(r["approximationError"] for r in rows) < 0.05


def test_baseline_data_gives_the_medians_and_most_frequent_values(penguin_model, penguin_splits):
    import pyarrow.dataset as pads
    train = pads.dataset(str(penguin_splits["train"]), format="parquet").to_table().to_pandas()

    out = explain(penguin_model, penguin_splits["test"], baseline_data=penguin_splits["train"], path_count=2,
                  max_rows=2)

    assert out["baseline"]["body_mass_g"] == pytest.approx(train["body_mass_g"].median())
    assert out["baseline"]["island"] == train["island"].mode()[0]
