"""One replica of a train step run as a TFJob: `python -m kfkit.components.train.replica SPEC.json`.

The step (components/train/tfjob.py) stages its inputs and this spec on storage that every replica
mounts; the operator gives each replica its TF_CONFIG, so train() runs here as it runs in the step,
under MultiWorkerMirroredStrategy. The chief alone writes the model and result.json (the metrics
the step reports), beside the spec.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from kfkit.atomic import atomic_file


def main(argv: list[str] | None = None) -> int:
    from kfkit.components.train.train import Hyperparameters, train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    [spec_path] = argv if argv is not None else sys.argv[1:]
    spec = json.loads(Path(spec_path).read_text())
    paths = spec["paths"]
    result = train(paths["train_data"], paths["eval_data"], json.loads(Path(paths["statistics"]).read_text()),
                   json.loads(Path(paths["schema"]).read_text()), spec["label"], paths["model"],
                   Hyperparameters(**spec["hyperparameters"]), spec["task"], spec["exclude_columns"],
                   tensorboard_dir=paths["tensorboard"], categorical_columns=spec["categorical_columns"],
                   checkpoint_dir=paths["checkpoints"])
    if result.is_chief:
        with atomic_file(paths["result"]) as f:
            json.dump({"metrics": result.metrics, "seconds": result.seconds, "epochs_run": result.epochs_run,
                       "task": result.spec.task, "classes": result.spec.classes,
                       "signature": result.spec.signature}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
