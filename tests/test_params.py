"""Pipeline parameters from `--param k=v` and YAML files, checked against the compiled pipeline's
inputs (their KFP types) before anything runs or is sent."""

import pytest

from kfkit import pipelines
from kfkit.errors import ConfigError
from kfkit.params import check, load_file, parse_assignments, pipeline_inputs, split_assignment

TRAINING = pipelines.load("training")


def test_assignments_keep_yaml_types_and_rfc3339_strings():
    values = parse_assignments(["epochs=3", "learning_rate=0.5", "seed=-1", "flag=true", "name=penguins",
                                "empty=", "hidden_units=[16, 8]", "overrides={epochs: 2}",
                                "window_end=2026-11-22T10:00:00Z", "query=SELECT a = b", "bad=[1, 2"])

    assert values == {"epochs": 3, "learning_rate": 0.5, "seed": -1, "flag": True, "name": "penguins", "empty": "",
                      "hidden_units": [16, 8], "overrides": {"epochs": 2}, "window_end": "2026-11-22T10:00:00Z",
                      "query": "SELECT a = b", "bad": "[1, 2"}


def test_an_assignment_without_equals_names_the_flag_and_item():
    with pytest.raises(ConfigError, match=r"^--param 'epochs' must look like name=value$"):
        parse_assignments(["epochs"])
    with pytest.raises(ConfigError, match=r"^--label 'x' must look like name=value$"):
        split_assignment("x", "--label")


def test_a_name_is_stripped_and_the_value_keeps_everything_after_the_first_equals():
    assert split_assignment(" query =a=b") == ("query", "a=b")


def test_a_parameter_file_is_a_mapping(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("epochs: 3\nwindow_start: 2026-11-22T10:00:00Z\n")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1\n")

    assert load_file(good) == {"epochs": 3, "window_start": "2026-11-22T10:00:00Z"}
    assert load_file(empty) == {}
    with pytest.raises(ConfigError, match="must hold a mapping of name: value"):
        load_file(listed)
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_file(broken)
    with pytest.raises(ConfigError, match="does not exist"):
        load_file(tmp_path / "missing.yaml")


def test_inputs_are_read_from_the_compiled_pipeline():
    inputs = pipeline_inputs(TRAINING)

    assert inputs["epochs"] == ("Integer", True)
    assert inputs["learning_rate"] == ("Float", True)
    assert inputs["query"] == ("String", True)
    assert inputs["hidden_units"] == ("List", True)
    assert inputs["query_parameters"] == ("Dict", True)


def test_an_unknown_parameter_is_refused_with_the_valid_names():
    with pytest.raises(ConfigError, match=r"pipeline 'training' has no parameter 'epoch'; its parameters are: .*epochs"):
        check(TRAINING, {"epoch": 3}, "training")


@pytest.mark.parametrize("name, value, expected", [
    ("epochs", 2.5, "integer"), ("epochs", True, "integer"), ("epochs", "3", "integer"),
    ("learning_rate", "fast", "float"), ("learning_rate", False, "float"),
    ("query", 3, "string"), ("hidden_units", "16,8", "list"), ("query_parameters", [1], "dict"),
])
def test_a_value_of_the_wrong_type_is_refused_naming_parameter_type_and_value(name, value, expected):
    with pytest.raises(ConfigError) as refused:
        check(TRAINING, {name: value}, "training")

    assert str(refused.value) == (f"parameter {name!r} of pipeline 'training' expects {expected}, "
                                  f"got {value!r} ({type(value).__name__})")


def test_an_integer_for_a_double_becomes_a_float_and_valid_values_pass_through():
    values = check(TRAINING, {"learning_rate": 1, "epochs": 3, "query": "SELECT 1", "hidden_units": [8],
                              "query_parameters": {}}, "training")

    assert values == {"learning_rate": 1.0, "epochs": 3, "query": "SELECT 1", "hidden_units": [8],
                      "query_parameters": {}}
    assert isinstance(values["learning_rate"], float)


def test_a_missing_required_parameter_is_named():
    from kfp import dsl

    @dsl.component(base_image="python:3.11")
    def echo(text: str) -> str:
        return text

    @dsl.pipeline(name="needs-two")
    def needs_two(table: str, rows: int, note: str = ""):
        echo(text=table)

    with pytest.raises(ConfigError, match=r"^pipeline 'needs-two' needs parameter\(s\) table, rows$"):
        check(needs_two, {"note": "x"})


def test_file_refusals_name_the_file(tmp_path):
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1\n")

    with pytest.raises(ConfigError, match=rf"^parameter file '{listed}' must hold a mapping of name: value$"):
        load_file(listed)
    with pytest.raises(ConfigError, match=rf"^parameter file '{broken}' is not valid YAML: "):
        load_file(broken)
    with pytest.raises(ConfigError, match=rf"^parameter file '{tmp_path / 'missing.yaml'}' does not exist$"):
        load_file(tmp_path / "missing.yaml")


def test_an_unknown_name_lists_every_parameter():
    from kfp import dsl

    @dsl.component(base_image="python:3.11")
    def echo(text: str) -> str:
        return text

    @dsl.pipeline(name="two")
    def two(b: str = "", a: int = 1):
        echo(text=b)

    with pytest.raises(ConfigError, match=r"^pipeline 'two' has no parameter 'c'; its parameters are: a, b$"):
        check(two, {"c": 1})


def test_integers_stay_integers_and_only_doubles_are_widened():
    values = check(TRAINING, {"epochs": 3, "learning_rate": 1}, "training")

    assert type(values["epochs"]) is int and type(values["learning_rate"]) is float


def test_a_template_loaded_from_yaml_is_checked_like_the_pipeline_function(tmp_path):
    from kfp import compiler, components, dsl
    from kfp.dsl import Dataset, Input

    @dsl.component(base_image="python:3.11")
    def use(data: Input[Dataset], rate: float, rows: int) -> str:
        return ""

    path = tmp_path / "use.yaml"
    compiler.Compiler().compile(use, str(path))
    loaded = components.load_component_from_file(str(path))

    values = check(loaded, {"data": object(), "rate": 2, "rows": 5}, "use")

    assert pipeline_inputs(loaded)["rate"] == ("Float", False)
    assert type(values["rate"]) is float and type(values["rows"]) is int
    # an input of a type params does not know (an artifact) is passed over, and the rest still checked
    with pytest.raises(ConfigError, match=r"^parameter 'rows' of pipeline 'use' expects integer"):
        check(loaded, {"data": object(), "rate": 2.0, "rows": "five"}, "use")


def test_a_mapping_for_a_string_parameter_is_passed_on_as_json_text():
    values = parse_assignments(['search_space={"dropout": {"type": "float", "low": 0, "high": 0.5}}'])

    checked = check(pipelines.load("training"), values, "training")

    assert checked["search_space"] == '{"dropout": {"type": "float", "low": 0, "high": 0.5}}'
    from kfkit.components.tune.space import parse_space
    assert parse_space(checked["search_space"])[0].high == 0.5
