import numpy as np
import pyarrow as pa
import pytest

from kfkit.components.batch_predict.batch_predict import predict_local
from kfkit.components.register.register import register_model
from kfkit.errors import ConfigError
from kfkit.runs.local import run_local
from kfkit.serving.model_io import LoadedModel
from kfkit.warehouse.local import LocalWarehouse


@pytest.fixture(scope="module")
def root_with_champion(tmp_path_factory, penguin_model):
    root = tmp_path_factory.mktemp("batch-root")
    register_model(str(penguin_model), model_name="penguins", blessed=True, local_root=str(root))
    LocalWarehouse(root).ensure_sample_data()
    return root


def read(root, table):
    return pa.Table.from_batches(list(LocalWarehouse(root).query_batches(f"SELECT * FROM `{table}`")))


@pytest.mark.slow
def test_batch_prediction_pipeline_scores_the_table_with_the_champion(root_with_champion, penguin_model):
    summary = run_local("batch-prediction", {"destination_table": "scored.penguins"}, str(root_with_champion))

    table = read(root_with_champion, "local-project.scored.penguins")
    source = read(root_with_champion, "bigquery-public-data.ml_datasets.penguins")
    assert table.num_rows == source.num_rows == 344
    assert set(table.column("model_version").to_pylist()) == {"1"}
    expected = LoadedModel(penguin_model).predict_table(source)
    assert table.column("predicted_species").to_pylist() == [c.decode() for c in expected["classes"]]
    assert np.allclose(np.array(table.column("scores").to_pylist()), expected["scores"], atol=1e-6)
    assert summary.tasks[0].name == "batch-predict"


def test_unknown_alias_is_a_clear_error(root_with_champion):
    with pytest.raises(ConfigError, match="no version of model 'penguins' holds the alias 'canary'"):
        predict_local("bigquery-public-data.ml_datasets.penguins", "scored.x", model_name="penguins",
                      model_alias="canary", local_root=str(root_with_champion))


def test_source_without_the_model_columns_fails_and_writes_no_table(root_with_champion):
    with pytest.raises(ConfigError, match="lacks column\\(s\\) 'island', 'culmen_length_mm'"):
        predict_local("bigquery-public-data.chicago_taxi_trips.taxi_trips", "scored.taxi", model_name="penguins",
                      local_root=str(root_with_champion))
    assert not any("scored" in t and "taxi" in t or "_kfkit_tmp" in t for t in LocalWarehouse(root_with_champion).tables())


@pytest.mark.slow
def test_batch_prediction_checks_its_input_against_the_training_statistics(root_with_champion):
    import json

    source = read(root_with_champion, "bigquery-public-data.ml_datasets.penguins")
    shifted = source.set_column(source.schema.get_field_index("body_mass_g"), "body_mass_g",
                                pa.compute.add(source.column("body_mass_g"), 3000.0))
    LocalWarehouse(root_with_champion).write_table("incoming.penguins", shifted)

    same = run_local("batch-prediction", {"destination_table": "scored.same", "monitor_input": True},
                     str(root_with_champion))
    moved = run_local("batch-prediction", {"source_table": "local-project.incoming.penguins",
                                           "destination_table": "scored.moved", "monitor_input": True},
                      str(root_with_champion))

    verdict = {name: json.loads((s.run_dir / "monitor-endpoint" / "anomalies").read_text())
               for name, s in (("same", same), ("moved", moved))}
    assert verdict["same"]["verdict"] == "no drift" and verdict["same"]["mode"] == "batch skew"
    assert verdict["moved"]["verdict"] == "drift"
    assert [a["feature"] for a in verdict["moved"]["anomalies"]] == ["body_mass_g"]
    assert {t.name for t in moved.tasks} == {"monitor-endpoint", "batch-predict"}
    assert "Wrote local-project.scored.moved: 344 rows" in moved.render()
    assert "Input check: Verdict: drift" in moved.render()
