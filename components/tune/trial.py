"""One Vertex AI hyperparameter tuning trial: `python -m kfkit.components.tune.trial --config PATH
--learning_rate=0.01 ...` in kfkit's trainer image.

Vertex passes the trial's values as `--<parameter id>=<value>` arguments; the config (written by
components/tune/vertex.py) holds the training inputs (paths under /gcs/, which Vertex mounts in
custom jobs), the base hyperparameters and the objective. The trial trains with train's own code
(nothing exported) and reports the objective's eval metric after each epoch and, last, its value at
the best epoch (Vertex takes the last measurement, or the best with measurement_selection=best).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from kfkit.components.tune.space import Dimension, decode


def run(argv: list[str] | None = None) -> float:
    from kfkit.components.train.train import Hyperparameters, train
    from kfkit.components.tune.hypertune import MetricReporter

    parser = argparse.ArgumentParser(prog="kfkit.components.tune.trial")
    parser.add_argument("--config", required=True)
    known, rest = parser.parse_known_args(argv)
    config = json.loads(Path(known.config).read_text())
    dims = [Dimension(**d) for d in config["space"]]
    values = argparse.ArgumentParser()
    for dim in dims:
        values.add_argument(f"--{dim.name}", required=True)
    given = vars(values.parse_args(rest))
    params = {d.name: decode(d.name, given[d.name]) for d in dims}
    hp = Hyperparameters(**{**config["base"], **params}).check()
    inputs = config["inputs"]
    metric = config["metric"]
    reporter = MetricReporter()

    import keras

    class Report(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get("val_" + metric.removeprefix("eval_"))
            if value is not None:
                reporter.report(metric, float(value), epoch + 1)

    statistics = json.loads(Path(inputs["statistics"]).read_text())
    schema = json.loads(Path(inputs["schema"]).read_text())
    result = train(inputs["train_data"], inputs["eval_data"], statistics, schema, inputs["label"], None, hp,
                   inputs["task"], inputs["exclude_columns"], categorical_columns=inputs["categorical_columns"],
                   callbacks=[Report()], verbose=2)
    value = result.metrics[metric]
    reporter.report(metric, value, result.epochs_run + 1)
    logging.getLogger("kfkit.tune").info("trial with %s: %s %.6g", params, metric, value)
    return value


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run()
