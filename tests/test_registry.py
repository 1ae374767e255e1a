import pytest

from kfkit.components.register.register import champion_model_dir, register_model
from kfkit.adapters.mlflow_registry import MlflowRegistry
from kfkit.errors import ConfigError


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    return MlflowRegistry(tmp_path_factory.mktemp("mlflow-root"))


def test_local_register_creates_versions_and_moves_the_champion_alias(registry, penguin_model):
    first = register_model(str(penguin_model), model_name="birds", blessed=True, metrics={"accuracy": 0.9},
                           task_id="run1-register", registry=registry)
    second = register_model(str(penguin_model), model_name="birds", blessed=True, metrics={"accuracy": 0.95},
                            task_id="run2-register", registry=registry)

    assert (first["version"], second["version"]) == ("1", "2")
    assert registry.version_by_alias("birds", "champion").version == "2"
    assert registry.client.get_model_version("birds", "1").aliases == []
    assert champion_model_dir("birds", registry=registry) == second["model_dir"]
    assert (registry.root / "mlartifacts").exists()  # artifacts under the local root, not ./mlruns


def test_retried_local_register_reuses_its_version(registry, penguin_model):
    first = register_model(str(penguin_model), model_name="retry", task_id="same-task", registry=registry)
    again = register_model(str(penguin_model), model_name="retry", task_id="same-task", registry=registry)
    assert again["version"] == first["version"] == "1" and again["created"] is False
    assert len(registry.client.search_model_versions("name = 'retry'")) == 1


def test_unblessed_registration_is_only_a_challenger(registry, penguin_model):
    meta = register_model(str(penguin_model), model_name="maybe", blessed=False, registry=registry)
    assert meta["aliases"] == ["challenger"]
    assert champion_model_dir("maybe", registry=registry) is None


def test_register_requires_a_model_name(penguin_model):
    with pytest.raises(ConfigError, match="model_name is empty"):
        register_model(str(penguin_model), model_name="")
