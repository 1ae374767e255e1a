"""Tuning on the Chicago taxi sample, in one run: TFX's Chicago taxi task (big tipper: a tip over 20% of
the fare), with examples/taxi-tips.yaml's features and categorical columns:

    python benchmarks/tune.py [--trials 16] [--libraries]

1. the default hyperparameters against the tuned ones: both models trained with three seeds each
   and scored on the test split, which tuning never sees (mean log loss, accuracy);
2. kfkit's tuner (Optuna TPE + median pruning) against plain random search (Optuna's RandomSampler,
   no pruning) with the same trial budget: best eval loss reached and wall time;
3. with --libraries, Keras Tuner's Bayesian optimization on the same space, budget and training code
   (kfkit's build_model and tf.data input), the comparison that chose Optuna: best eval loss, wall
   time, and the time outside training (each library's own overhead).
One process, trials one at a time, so the figures compare within this run only.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SPACE = {"learning_rate": {"type": "float", "low": 0.0003, "high": 0.1, "log": True},
         "hidden_units": {"type": "categorical", "choices": [[32], [64, 32], [128, 64]]},
         "dropout": {"type": "float", "low": 0.0, "high": 0.4}}
BASE = {"epochs": 10, "batch_size": 256, "patience": 3}
LABEL = "big_tipper"
SEEDS = (1, 2, 3)


def test_scores(model_dir: Path, test_path: Path, label: str) -> tuple[float, float]:
    """(log loss, accuracy) of an exported binary model on the test split."""
    import numpy as np
    import pyarrow.dataset as ds

    from kfkit.serving.model_io import LoadedModel

    table = ds.dataset(test_path).to_table()
    scores = np.asarray(LoadedModel(model_dir).predict_table(table)["scores"], dtype=float).reshape(len(table), -1)
    p = np.clip(scores[:, -1], 1e-7, 1 - 1e-7)
    y = np.asarray(table.column(label).to_pylist(), dtype=float)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))), float(np.mean((p >= 0.5) == (y == 1)))


def ds_column(path: Path, name: str) -> list:
    import pyarrow.dataset as ds

    return ds.dataset(path).to_table(columns=[name]).column(name).to_pylist()


def keras_tuner_search(inputs, trials: int, scratch: Path, seed: int) -> tuple[float, float, float]:
    """(best eval loss, wall seconds, seconds inside model.fit) with Keras Tuner's BayesianOptimization."""
    import keras
    import keras_tuner as kt

    from kfkit.components.train.train import Hyperparameters, build_model, make_dataset
    from kfkit.tabular import build_spec

    spec = build_spec(inputs.statistics, inputs.schema, inputs.label, inputs.task, inputs.exclude_columns,
                      inputs.categorical_columns)
    fit_seconds = [0.0]

    def build(hp):
        units = [int(u) for u in hp.Choice("hidden_units", ["32", "64,32", "128,64"]).split(",")]
        return build_model(spec, Hyperparameters(hidden_units=units, dropout=hp.Float("dropout", 0.0, 0.4),
                                                 learning_rate=hp.Float("learning_rate", 0.0003, 0.1, sampling="log"),
                                                 batch_size=BASE["batch_size"]))

    class Timed(kt.BayesianOptimization):
        def run_trial(self, trial, *args, **kwargs):
            started = time.perf_counter()
            try:
                return super().run_trial(trial, *args, **kwargs)
            finally:
                fit_seconds[0] += time.perf_counter() - started

    tuner = Timed(build, objective="val_loss", max_trials=trials, seed=seed, directory=str(scratch), project_name="kt",
                  overwrite=True)
    started = time.perf_counter()
    tuner.search(make_dataset(inputs.train_data, spec, BASE["batch_size"], shuffle_seed=42),
                 validation_data=make_dataset(inputs.eval_data, spec, BASE["batch_size"]), epochs=BASE["epochs"],
                 callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=BASE["patience"],
                                                          restore_best_weights=True)], verbose=0)
    wall = time.perf_counter() - started
    return float(tuner.oracle.get_best_trials(1)[0].score), wall, fit_seconds[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--libraries", action="store_true", help="also run Keras Tuner on the same budget")
    parser.add_argument("--seed", type=int, default=42, help="seed of every sampler (42)")
    args = parser.parse_args()

    import yaml

    from kfkit.components.ingest.ingest import SPLIT_NAMES, SplitSpec, run_ingest
    from kfkit.components.train.train import Hyperparameters, train
    from kfkit.components.tune.tune import TrainingInputs, tune_local
    from kfkit.components.validate.validate import validate
    from kfkit.warehouse.local import LocalWarehouse

    logging.disable(logging.WARNING)
    example = yaml.safe_load((Path(__file__).resolve().parent.parent / "examples" / "taxi-tips.yaml").read_text())
    scratch = Path(tempfile.mkdtemp(prefix="kfkit-bench-tune-"))
    try:
        LocalWarehouse(scratch).ensure_sample_data()
        splits = {n: scratch / n for n in SPLIT_NAMES}
        query = example["query"].replace("CAST(tips > 0 AS INT64) AS tipped",
                                         f"CAST(tips > fare * 0.2 AS INT64) AS {LABEL}")
        run_ingest(query, splits, label_column=LABEL, local_root=str(scratch),
                   split=SplitSpec({"train": 0.8, "eval": 0.1, "test": 0.1}, "*"))
        v = validate(splits, LABEL)
        inputs = TrainingInputs(str(splits["train"]), str(splits["eval"]), v.statistics, v.schema, LABEL,
                                categorical_columns=example["categorical_columns"])
        rows = {k: v.split_rows[k] for k in ("train", "eval", "test")}

        runs = {}
        for name, kwargs in (("optuna TPE + pruning (kfkit)", {}),
                             ("random search (same budget)", {"sampler": "random", "pruning": False})):
            started = time.perf_counter()
            result = tune_local(inputs, SPACE, base=BASE, max_trials=args.trials, local_root=str(scratch),
                                study_name=name.split()[0] + kwargs.get("sampler", ""), seed=args.seed, **kwargs)
            runs[name] = (result, time.perf_counter() - started)
        if args.libraries:
            runs["keras-tuner Bayesian"] = keras_tuner_search(inputs, args.trials, scratch / "kt", args.seed)

        scored = {}
        tuned = runs["optuna TPE + pruning (kfkit)"][0].best
        import numpy as np

        for name, hp in (("default hyperparameters", {**BASE}), ("tuned hyperparameters", tuned)):
            runs_scored = []
            for seed in SEEDS:
                model_dir = scratch / f"{name.split()[0]}-{seed}"
                train(inputs.train_data, inputs.eval_data, inputs.statistics, inputs.schema, LABEL, model_dir,
                      Hyperparameters(**{**BASE, **hp, "seed": seed}), categorical_columns=inputs.categorical_columns,
                      verbose=0)
                runs_scored.append(test_scores(model_dir, splits["test"], LABEL))
            scored[name] = tuple(float(np.mean(column)) for column in zip(*runs_scored))

        positive = float(np.mean(ds_column(splits["test"], LABEL)))
        print(f"{LABEL} (tip > 20% of the fare; {positive:.1%} of test rows): rows train {rows['train']:,}, "
              f"eval {rows['eval']:,}, test {rows['test']:,}; "
              f"budget {args.trials} trials, up to {BASE['epochs']} epochs each, one at a time; seed {args.seed}")
        print(f"\n{'model (test split, mean of 3 seeds)':<36}{'log loss':>10}{'accuracy':>10}")
        for name, (loss, accuracy) in scored.items():
            print(f"{name:<36}{loss:>10.4f}{accuracy:>10.4f}")
        (d_loss, d_acc), (t_loss, t_acc) = scored.values()
        print(f"tuned / default log loss: {t_loss / d_loss:.3f}; accuracy {t_acc - d_acc:+.4f}")
        print(f"tuned: {', '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}' for k, v in tuned.items())}")

        print(f"\n{'search':<32}{'best eval loss':>15}{'wall s':>9}{'trials':>8}{'pruned':>8}{'epochs':>8}"
              f"{'outside fit s':>15}")
        base_wall = runs["random search (same budget)"][1]
        for name, run in runs.items():
            if name.startswith("keras"):
                best, wall, fit = run  # Keras Tuner keeps no per-epoch count
                print(f"{name:<32}{best:>15.4f}{wall:>9.1f}{args.trials:>8}{0:>8}{'-':>8}{wall - fit:>15.1f}")
                continue
            result, wall = run
            inside = sum(t.seconds or 0.0 for t in result.trials)
            pruned = sum(t.state == "PRUNED" for t in result.trials)
            epochs = sum(t.epochs or 0 for t in result.trials)
            print(f"{name:<32}{result.best_value:>15.4f}{wall:>9.1f}{len(result.trials):>8}{pruned:>8}{epochs:>8}"
                  f"{wall - inside:>15.1f}")
        ours, random_run = runs["optuna TPE + pruning (kfkit)"], runs["random search (same budget)"]
        print(f"\nkfkit / random: best eval loss {ours[0].best_value / random_run[0].best_value:.3f}, "
              f"wall time {ours[1] / base_wall:.2f}")
        if args.libraries:
            best, wall, _ = runs["keras-tuner Bayesian"]
            print(f"kfkit / keras-tuner: best eval loss {ours[0].best_value / best:.3f}, wall time {ours[1] / wall:.2f}")
        if not all(math.isfinite(x) for x in (d_loss, t_loss)):
            raise SystemExit("a model scored a non-finite log loss")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
