"""A retrain trains the champion's model again: train the taxi example (non-default parameters),
drive shifted traffic at its endpoint, and the monitoring pipeline's retrain records exactly the
recipe the champion was trained with."""

import datetime as dt
import json
import random
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest
import yaml

from kfkit.components.recipe.recipe import RECIPE_FILE, training_defaults
from kfkit.runs.local import run_local
from kfkit.serving.server import ModelServer

pytestmark = pytest.mark.slow
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "taxi-tips.yaml"


def _versions(root: Path, name: str) -> list[dict]:
    from mlflow import MlflowClient

    from kfkit.adapters.mlflow_registry import MlflowRegistry

    client = MlflowClient(tracking_uri=MlflowRegistry(root).uri, registry_uri=MlflowRegistry(root).uri)
    recipes = []
    for version in sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version)):
        model_dir = MlflowRegistry(root)._model_dir(version)
        recipes.append(json.loads((Path(model_dir) / RECIPE_FILE).read_text()))
    return recipes


def test_drift_retrains_with_the_champions_recorded_recipe(tmp_path):
    params = yaml.safe_load(EXAMPLE.read_text())
    first = run_local("training", dict(params), str(tmp_path))
    rows = ds.dataset(first.run_dir / "bigquery-query-to-dataset" / "train_data").to_table().drop(["tipped"])
    rows = rows.to_pylist()
    server = ModelServer(endpoint="taxi-tips", local_root=str(tmp_path))
    rnd = random.Random(0)
    start = time.time()
    for _ in range(60):
        batch = [dict(r) for r in (rnd.choice(rows) for _ in range(5))]
        for row in batch:
            row["fare"] = (row["fare"] or 0) + 80.0
        server.predict({"instances": batch})
    end = time.time() + 0.001

    summary = run_local("monitoring", {"endpoint_name": "taxi-tips", "model_name": "taxi-tips",
                                       "window_end": dt.datetime.fromtimestamp(end, dt.timezone.utc).isoformat(),
                                       "window_hours": (end - start) / 3600}, str(tmp_path))

    names = [t.name for t in summary.tasks]
    assert "champion-recipe" in names and "train-tensorflow-model" in names
    original, retrained = _versions(tmp_path, "taxi-tips")[:2]
    assert original == retrained
    assert set(original) == set(training_defaults())
    assert {k: original[k] for k in params} == {k: (float(v) if isinstance(training_defaults()[k], float) else v)
                                                for k, v in params.items()}
