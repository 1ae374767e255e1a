"""kfkit's layering as a test (docs/architecture.md): the contracts of ci/layers.py hold on the source,
and the checker itself catches each kind of break it is there for."""

import importlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ci"))
import layers  # noqa: E402


def test_kfkit_imports_keep_every_layering_contract():
    graph = layers.import_graph()

    assert layers.violations(graph) == []


def test_every_from_kfkit_import_names_a_module_or_a_name_that_exists():
    assert layers.missing_names() == []


def test_import_graph_sees_lazy_imports_and_components_under_their_installed_names():
    graph = layers.import_graph()

    # a function-level import of the canary component by the CLI, and kfkit.components' own modules
    assert "kfkit.components.canary.canary" in graph["kfkit.cli"]
    assert "kfkit.warehouse.semantics" in graph["kfkit.warehouse.sql"]
    assert "kfkit.components.validate.kinds" in graph["kfkit.components.validate.bigquery_stats"]


@pytest.mark.parametrize("importer, imported, expected", [
    ("kfkit.adapters.vertex", "kfkit.components.deploy.deploy", "kfkit.adapters.vertex (adapters) imports "
     "kfkit.components.deploy.deploy (components)"),
    ("kfkit.serving.server", "kfkit.warehouse.local", "kfkit.serving.server (serving) imports kfkit.warehouse.local (warehouse)"),
    ("kfkit.warehouse.sql", "kfkit.runs.local", "kfkit.warehouse.sql (warehouse) imports kfkit.runs.local (runs)"),
    ("kfkit.config", "kfkit.pipelines.training", "kfkit.config (core) imports kfkit.pipelines.training (pipelines)"),
    ("kfkit.components.train.train", "kfkit.pipelines", "kfkit.components.train.train (components) imports "
     "kfkit.pipelines (pipelines)"),
    ("kfkit.components.canary.canary", "kfkit.components.deploy.component",
     "kfkit.components.canary.canary imports another component's KFP wrapper kfkit.components.deploy.component"),
])
def test_layering_check_names_a_planted_forbidden_import(importer, imported, expected):
    graph = {importer: {imported}, imported: set()}

    assert layers.violations(graph) == [expected]


def test_layering_check_names_a_planted_import_cycle():
    graph = {"kfkit.warehouse.sql": {"kfkit.warehouse.semantics"},
             "kfkit.warehouse.semantics": {"kfkit.warehouse.sql"}}

    assert layers.violations(graph) == ["import cycle: kfkit.warehouse.semantics -> kfkit.warehouse.sql -> "
                                        "kfkit.warehouse.semantics"]


def test_a_component_may_use_its_own_wrapper_and_another_components_logic():
    graph = {"kfkit.components.canary.canary": {"kfkit.components.deploy.deploy"},
             "kfkit.components.canary.component": {"kfkit.components.canary.canary"},
             "kfkit.components.deploy.deploy": set()}

    assert layers.violations(graph) == []


@pytest.mark.parametrize("package", ["kfkit.warehouse", "kfkit.serving", "kfkit.runs", "kfkit.adapters"])
def test_each_subsystem_package_says_what_it_holds_and_what_it_may_import(package):
    doc = importlib.import_module(package).__doc__

    assert doc and ("May import" in doc or "imports" in doc)


def test_models_registered_before_the_move_still_unpickle_from_the_old_module_path():
    pytest.importorskip("mlflow")
    from kfkit import mlflow_pyfunc
    from kfkit.serving import mlflow_pyfunc as moved

    assert mlflow_pyfunc.KfkitSavedModel is moved.KfkitSavedModel
