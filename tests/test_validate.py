import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kfkit.components.validate.validate import compute_statistics, infer_schema, render_report, validate
from kfkit.errors import ConfigError, ValidationError


def write(directory, **columns):
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), directory / "part-00000.parquet")
    return directory


def splits(tmp_path, train, eval_=None, test=None):
    return {"train": write(tmp_path / "train", **train), "eval": write(tmp_path / "eval", **(eval_ or train)),
            "test": write(tmp_path / "test", **(test or train))}


def test_statistics_match_pandas_on_penguins(penguin_splits):
    frame = pd.read_parquet(penguin_splits["train"])

    stats = compute_statistics(penguin_splits["train"], "species")

    mass = stats["columns"]["body_mass_g"]
    assert stats["rows"] == len(frame)
    assert mass["count"] == frame.body_mass_g.count() and mass["nulls"] == frame.body_mass_g.isna().sum()
    assert mass["mean"] == pytest.approx(frame.body_mass_g.mean())
    assert mass["std"] == pytest.approx(frame.body_mass_g.std(ddof=0))
    assert mass["quantiles"]["0.5"] == pytest.approx(frame.body_mass_g.quantile(0.5))
    assert sum(mass["histogram"]["counts"]) == mass["count"]
    assert stats["columns"]["sex"]["nulls"] == frame.sex.isna().sum()
    assert stats["columns"]["island"]["frequencies"] == frame.island.value_counts().to_dict()


def test_clean_penguin_splits_have_no_blocking_anomalies(penguin_splits):
    result = validate(penguin_splits, "species")
    assert result.blocking == [] and result.schema_inferred
    assert {c["name"]: c["kind"] for c in result.schema["columns"]}["island"] == "categorical"


def test_validate_reports_column_missing_from_a_split(tmp_path):
    data = splits(tmp_path, {"x": [1.0, 2.0], "y": ["a", "b"]}, test={"y": ["a", "b"]})

    result = validate(data, "y")

    assert [str(a) for a in result.blocking] == [
        "column 'x' in split 'test': missing (the schema expects a numeric column of type DOUBLE)"]


def test_validate_checks_a_given_schema_for_type_changes_and_extra_columns(tmp_path):
    schema = {"label": "y", "columns": [{"name": "x", "kind": "numeric", "type": "DOUBLE"},
                                        {"name": "y", "kind": "categorical", "type": "VARCHAR", "domain": ["a", "b"]}]}
    data = splits(tmp_path, {"x": ["1", "2"], "y": ["a", "b"], "z": [1, 2]})

    result = validate(data, "y", schema=schema)

    kinds = {(a.column, a.kind, a.blocking) for a in result.anomalies if a.split == "train"}
    assert ("x", "type_change", True) in kinds and ("z", "extra_column", False) in kinds


def test_validate_blocks_null_labels(tmp_path):
    data = splits(tmp_path, {"x": [1.0, 2.0, 3.0], "y": ["a", None, "b"]})
    result = validate(data, "y")
    assert any(a.kind == "null_label" and "null in 1 of 3 rows" in a.message for a in result.blocking)


def test_validate_blocks_an_empty_split(tmp_path):
    data = splits(tmp_path, {"x": [1.0, 2.0], "y": ["a", "b"]},
                  eval_={"x": pa.array([], pa.float64()), "y": pa.array([], pa.string())})
    result = validate(data, "y")
    assert [(a.split, a.kind) for a in result.blocking] == [("eval", "empty_split")]


def test_validate_blocks_unseen_categories_beyond_tolerance_only(tmp_path):
    train = {"c": ["a", "b"] * 50, "y": ["p", "q"] * 50}
    few_new = {"c": ["a"] * 99 + ["new"], "y": ["p", "q"] * 50}
    many_new = {"c": ["a"] * 80 + ["new", "other"] * 10, "y": ["p", "q"] * 50}

    result = validate(splits(tmp_path, train, eval_=few_new, test=many_new), "y", unseen_tolerance=0.05)

    unseen = {a.split: a for a in result.anomalies if a.kind == "unseen_categories"}
    assert unseen["eval"].blocking is False and "1.00% of rows" in unseen["eval"].message
    assert unseen["test"].blocking is True and "'new'" in unseen["test"].message


def test_validate_blocks_all_null_feature_and_single_class_label(tmp_path):
    data = splits(tmp_path, {"x": pa.array([None, None], pa.float64()), "y": ["a", "a"]})
    result = validate(data, "y")
    assert {(a.column, a.kind) for a in result.blocking} == {("x", "all_null"), ("y", "single_class")}


def test_validate_rejects_label_missing_from_training_split(tmp_path):
    with pytest.raises(ValidationError, match="label column 'y' is not in the 'train' split; columns are: x"):
        validate(splits(tmp_path, {"x": [1.0]}), "y")


def test_validate_rejects_a_dataset_path_that_does_not_exist(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        validate({"train": tmp_path / "nope"}, "y")


def test_inferred_schema_round_trips_and_validates_its_own_data(penguin_splits, tmp_path):
    schema = infer_schema(compute_statistics(penguin_splits["train"], "species"))
    (tmp_path / "schema.json").write_text(json.dumps(schema))

    result = validate(penguin_splits, "species", schema=json.loads((tmp_path / "schema.json").read_text()))

    assert not result.schema_inferred and result.blocking == []


def test_report_has_a_chart_per_feature_and_lists_anomalies(tmp_path):
    rng = np.random.default_rng(0)
    data = splits(tmp_path, {"x": rng.normal(size=200), "c": rng.choice(["a", "b"], 200), "y": ["p", "q"] * 100})
    result = validate(data, "y")

    html = render_report(result)

    assert html.count("<svg") == 3  # x (histogram), c and y (bars)
    assert "No blocking anomalies" in html
