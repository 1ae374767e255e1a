"""LitServe serving the penguins SavedModel: a LitAPI with setup, decode_request, predict and
encode_response, one worker on the CPU, as LitServe's docs have it (python litserve_server.py DIR PORT).
Request: POST /predict {"instances": [...]}."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import litserve as ls  # noqa: E402
from penguin_model import SavedModel  # noqa: E402


class PenguinAPI(ls.LitAPI):
    def setup(self, device):
        self.model = SavedModel(os.environ["PENGUIN_MODEL_DIR"])

    def decode_request(self, request):
        return request["instances"]

    def predict(self, instances):
        return self.model.predict(instances)

    def encode_response(self, output):
        return {"predictions": output}


if __name__ == "__main__":
    server = ls.LitServer(PenguinAPI(), accelerator="cpu", workers_per_device=1)
    server.run(host="127.0.0.1", port=int(sys.argv[1]), num_api_servers=1, generate_client_file=False)
