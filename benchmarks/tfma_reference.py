"""kfkit's sliced metrics against TensorFlow Model Analysis on the same labels, predictions and slices.

    python benchmarks/tfma_reference.py        # in a virtualenv with tensorflow-model-analysis

TFMA 0.52 needs TensorFlow 2.21 with Apache Beam and tfx-bsl, more than kfkit's own environment
holds, so this runs in a side virtualenv (`pip install tensorflow-model-analysis==0.52.*`) with the
checkout on sys.path; kfkit's slices module needs only numpy, pyarrow and scipy, which TFMA brings. Fairness Indicators'
rates come from TFMA's FPR, FNR and PredictedPositiveRate at the 0.5 threshold: the
FairnessIndicators metric itself is in the separate fairness-indicators package.
Seeded synthetic data (a binary classifier and a regressor whose quality differs by group), the
same slicing specs on both sides; prints each slice's metric from both and the largest gap, and
exits 1 when a gap is above the tolerance (TFMA's AUC is a 10,000-threshold approximation).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from kfkit.components.evaluate.slices import compute_slices, parse_slicing_specs  # noqa: E402

SPECS = [{"feature_keys": ["group"]}, {"feature_keys": ["group", "sex"]}, {"feature_values": {"group": "b"}}]
ROWS = 3000
TOLERANCE = {"auc": 2e-3}  # anything else must agree to float rounding


def data(seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    group = rng.choice(["a", "b", "c"], ROWS, p=[0.5, 0.3, 0.2])
    sex = rng.choice(["f", "m"], ROWS)
    label = rng.integers(0, 2, ROWS)
    noise = np.where(group == "c", 2.5, 1.0)  # group c is served worse
    logit = (label * 2 - 1) * 1.5 + rng.normal(0, noise)
    target = rng.normal(10, 3, ROWS)
    return pd.DataFrame({"group": group, "sex": sex, "label": label.astype(np.float32),
                         "prediction": (1 / (1 + np.exp(-logit))).astype(np.float32),
                         "target": target.astype(np.float32),
                         "estimate": (target + rng.normal(0, noise)).astype(np.float32)})


def kfkit_slices(frame: pd.DataFrame) -> dict[str, dict]:
    specs = parse_slicing_specs(SPECS)
    columns = {c: pa.chunked_array([pa.array(frame[c].to_numpy())]) for c in ("group", "sex")}
    p = frame["prediction"].to_numpy(np.float64)
    classified = compute_slices(specs, "binary", ["0", "1"], frame["label"].to_numpy().astype(int),
                                np.stack([1 - p, p], axis=1), columns)
    regressed = compute_slices(specs, "regression", [], frame["target"].to_numpy(np.float64),
                               frame["estimate"].to_numpy(np.float64), columns)
    out = {}
    for c, r in zip(classified, regressed):
        m, q = c["metrics"], r["metrics"]
        out[c["slice"]["value"]] = {"example_count": m["examples"], "binary_accuracy": m["accuracy"], "auc": m["roc_auc"],
                                    "false_positive_rate": m["false_positive_rate"],
                                    "false_negative_rate": m["false_negative_rate"],
                                    "positive_rate": m["positive_rate"], "rmse": q["rmse"], "mae": q["mae"]}
    return out


def tfma_slices(frame: pd.DataFrame) -> dict[str, dict]:
    import tensorflow_model_analysis as tfma
    from google.protobuf import text_format
    from tensorflow_model_analysis.proto import config_pb2

    specs = "\n".join("slicing_specs { " + " ".join(f'feature_keys: "{k}"' for k in s.get("feature_keys", []))
                      + " ".join(f' feature_values {{ key: "{k}" value: "{v}" }}' for k, v in s.get("feature_values", {}).items())
                      + " }" for s in SPECS)

    def run(label: str, prediction: str, metrics: str) -> dict:
        config = text_format.Parse(f"""
            model_specs {{ label_key: "{label}" prediction_key: "{prediction}" }}
            metrics_specs {{ {metrics} }}
            {specs}""", config_pb2.EvalConfig())
        result = tfma.analyze_raw_data(frame, config)
        out = {}
        for key, values in result.slicing_metrics:
            flat = {name: value.get("doubleValue") for name, value in values[""][""].items()}
            out[tfma.slicer.stringify_slice_key(key)] = flat
        return out

    classified = run("label", "prediction", """
        metrics { class_name: "ExampleCount" } metrics { class_name: "BinaryAccuracy" }
        metrics { class_name: "AUC" config: '"num_thresholds": 10000' }
        metrics { class_name: "FPR" } metrics { class_name: "FNR" } metrics { class_name: "PredictedPositiveRate" }""")
    regressed = run("target", "estimate", """
        metrics { class_name: "MeanSquaredError" } metrics { class_name: "MeanAbsoluteError" }""")
    out = {}
    for key, m in classified.items():
        q = regressed[key]
        out[key] = {"example_count": m["example_count"], "binary_accuracy": m["binary_accuracy"], "auc": m["auc"],
                    "false_positive_rate": m["fpr"], "false_negative_rate": m["fnr"],
                    "positive_rate": m["predicted_positive_rate"],
                    "rmse": float(np.sqrt(q["mean_squared_error"])), "mae": q["mean_absolute_error"]}
    return out


def main() -> int:
    frame = data()
    ours, theirs = kfkit_slices(frame), tfma_slices(frame)
    missing = sorted(set(ours) ^ (set(theirs) - {"Overall"}))
    if missing:
        print(f"slices on one side only: {missing}")
        return 1
    worst: dict[str, float] = {}
    print(f"{'slice':<22}{'metric':<22}{'kfkit':>10}{'TFMA':>10}")
    for key in sorted(ours):
        for name, value in ours[key].items():
            gap = abs(value - theirs[key][name])
            worst[name] = max(worst.get(name, 0.0), gap)
            print(f"{key:<22}{name:<22}{value:>10.5f}{theirs[key][name]:>10.5f}")
    print("\nlargest gap per metric: " + ", ".join(f"{n} {g:.2g}" for n, g in worst.items()))
    failed = [n for n, g in worst.items() if g > TOLERANCE.get(n, 1e-5)]
    print("agree" if not failed else f"disagree on {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
