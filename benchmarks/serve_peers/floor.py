"""The floor of benchmarks/serve.py in its own process: kfkit's LoadedModel.predict_instances, called
in-process, with TensorFlow set up as `kfkit serve` sets it up (model_io.serving_threads with the
server's default), so the floor and the server run the model alike.
    python floor.py MODEL_DIR     then, per line on stdin, "BATCH SECONDS" -> a JSON line on stdout"""

import json
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parents[1])]

from kfkit.cli import build_parser  # noqa: E402
from kfkit.serving.model_io import LoadedModel, serving_threads  # noqa: E402
from serve import in_process  # noqa: E402

if __name__ == "__main__":
    serving_threads(build_parser().parse_args(["serve"]).intra_op_threads)  # kfkit serve's default
    model = LoadedModel(sys.argv[1])
    for line in sys.stdin:
        batch, seconds = line.split()
        print(json.dumps(in_process(model, int(batch), float(seconds))), flush=True)
