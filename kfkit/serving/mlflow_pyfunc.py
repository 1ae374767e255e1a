"""An MLflow pyfunc wrapper of a kfkit SavedModel, so `mlflow models serve` can serve it too."""

from __future__ import annotations

import warnings

import mlflow.pyfunc

# kfkit checks requests itself (kfkit.serving.model_io); MLflow's type-hint validation would only repeat it
warnings.filterwarnings("ignore", message=".*Add type hints to the `predict` method.*")


class KfkitSavedModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from kfkit.serving.model_io import LoadedModel

        self.model = LoadedModel(context.artifacts["saved_model"])

    def predict(self, context, model_input, params=None):
        import pandas as pd

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        records = frame.to_dict(orient="records")
        return self.model.predict_instances(records)
