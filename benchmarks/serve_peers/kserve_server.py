"""KServe's Python ModelServer serving the penguins SavedModel: a kserve.Model subclass, as KServe's
custom-model guide has it (python kserve_server.py --model_dir DIR --http_port P --grpc_port G).
Request: POST /v1/models/penguins:predict {"instances": [...]} (KServe's V1 protocol)."""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kserve  # noqa: E402
from penguin_model import SavedModel  # noqa: E402


class Penguins(kserve.Model):
    def __init__(self, name: str, model_dir: str):
        super().__init__(name)
        self.model_dir = model_dir
        self.load()

    def load(self):
        self.model = SavedModel(self.model_dir)
        self.ready = True

    async def predict(self, payload, headers=None, response_headers=None):
        return {"predictions": self.model.predict(payload["instances"])}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_dir", required=True)
    args, _ = parser.parse_known_args()
    kserve.ModelServer(workers=1).start([Penguins("penguins", args.model_dir)])
