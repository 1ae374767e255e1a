"""BentoML service serving the penguins SavedModel: a @bentoml.service class with one @bentoml.api
method, one worker, as BentoML's services guide has it (bentoml serve bentoml_service:Penguins).
Request: POST /predict {"instances": [...]}."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bentoml  # noqa: E402
from penguin_model import SavedModel  # noqa: E402


@bentoml.service(workers=1)
class Penguins:
    def __init__(self) -> None:
        self.model = SavedModel(os.environ["PENGUIN_MODEL_DIR"])

    @bentoml.api
    def predict(self, instances: list[dict]) -> dict:
        return {"predictions": self.model.predict(instances)}
