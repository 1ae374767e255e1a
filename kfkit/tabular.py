"""Reading Parquet splits for TensorFlow and models: feature specs, streamed numpy batches.

Shared by train, evaluate and prediction, so every stage turns a table into model inputs the same
way: numbers as float32 with nulls as NaN (the model imputes them), categories as strings with
nulls as "" (the model's out-of-vocabulary bucket).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kfkit.errors import ConfigError, ValidationError

TASKS = ("binary", "multiclass", "regression")
METADATA_FILE = "kfkit_model.json"
EMBEDDING_THRESHOLD = 64


@dataclass
class Feature:
    name: str
    kind: str  # numeric | categorical
    mean: float = 0.0
    variance: float = 1.0
    vocabulary: list[str] = field(default_factory=list)
    value_type: str = "string"  # categorical only: "string" (StringLookup) or "int64" (IntegerLookup)

    @property
    def dtype(self) -> str:
        return "float32" if self.kind == "numeric" else self.value_type


@dataclass
class ModelSpec:
    """What a trained model expects and predicts; saved beside the SavedModel as kfkit_model.json."""
    features: list[Feature]
    label: str
    task: str
    classes: list[str] = field(default_factory=list)
    label_mean: float = 0.0
    label_std: float = 1.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ModelSpec":
        data = dict(data)
        data["features"] = [Feature(**f) for f in data["features"]]
        return cls(**data)

    @property
    def signature(self) -> dict[str, str]:
        return {f.name: f.dtype for f in self.features}

    def save(self, model_dir: str | Path) -> None:
        (Path(model_dir) / METADATA_FILE).write_text(json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, model_dir: str | Path) -> "ModelSpec":
        path = Path(model_dir) / METADATA_FILE
        if not path.exists():
            raise ConfigError(f"{str(model_dir)!r} is not a kfkit model directory (no {METADATA_FILE})")
        return cls.from_json(json.loads(path.read_text()))


def resolve_task(task: str, label_stats: dict[str, Any]) -> str:
    if task not in ("auto", *TASKS):
        raise ConfigError(f"task must be auto, {', '.join(TASKS)}; got {task!r}")
    if task != "auto":
        return task
    if label_stats["kind"] == "categorical":
        return "binary" if label_stats.get("distinct", 0) == 2 else "multiclass"
    if label_stats.get("min") == 0 and label_stats.get("max") == 1 and "INT" in label_stats["type"].upper():
        return "binary"
    return "regression"


def build_spec(statistics: dict[str, Any], schema: dict[str, Any], label: str, task: str = "auto",
               exclude: list[str] | None = None, categorical: list[str] | None = None) -> ModelSpec:
    """Features, their normalization and vocabularies, from validate's schema and statistics.

    `categorical` names integer columns to treat as categories (IntegerLookup) instead of numbers.
    """
    columns = statistics["columns"]
    for name in categorical or []:
        if name not in columns:
            raise ConfigError(f"categorical_columns names {name!r}, which is not in the data; columns are: "
                              f"{', '.join(columns)}")
        if columns[name]["kind"] == "numeric" and "frequencies" not in columns[name]:
            raise ConfigError(f"categorical_columns: {name!r} is {columns[name]['type']}; only integer or string "
                              "columns can be categories")
    if label not in columns:
        raise ValidationError(f"label column {label!r} is not in the training statistics; columns are: "
                              f"{', '.join(columns)}")
    label_stats = columns[label]
    task = resolve_task(task, label_stats)
    skip = set(exclude or []) | {label}
    features = []
    for column in schema["columns"]:
        name = column["name"]
        if name in skip:
            continue
        if name not in columns:
            raise ValidationError(f"feature {name!r} is in the schema but missing from the training split")
        st = columns[name]
        if st.get("count", 0) == 0:
            raise ValidationError(f"feature {name!r} is null in every training row; drop it from the query "
                                  "or pass it in exclude_columns")
        if name in (categorical or []) and column["kind"] == "numeric":
            vocabulary = sorted((str(v) for v in st.get("frequencies", {})), key=int)
            features.append(Feature(name, "categorical", vocabulary=vocabulary, value_type="int64"))
        elif column["kind"] == "numeric":
            std = st.get("std") or 0.0
            features.append(Feature(name, "numeric", float(st["mean"]), float(std * std) or 1.0))
        elif column["kind"] == "categorical":
            vocabulary = sorted(str(v) for v in st.get("frequencies", {}))
            features.append(Feature(name, "categorical", vocabulary=vocabulary))
        # other kinds (dates, bytes) are not model inputs
    if not features:
        raise ValidationError("no usable feature columns besides the label")
    classes: list[str] = []
    label_mean, label_std = 0.0, 1.0
    if task in ("binary", "multiclass"):
        if label_stats["kind"] == "categorical":
            classes = sorted(str(v) for v in label_stats.get("frequencies", {}))
        else:
            lo, hi = int(label_stats["min"]), int(label_stats["max"])
            classes = [str(v) for v in range(lo, hi + 1)]
        if len(classes) < 2:
            raise ValidationError(f"label {label!r} has a single class ({', '.join(classes) or 'none'}) in the "
                                  "training split; a classifier needs at least two")
        if task == "binary" and len(classes) != 2:
            raise ValidationError(f"task is binary but label {label!r} has {len(classes)} classes")
    else:
        if label_stats["kind"] != "numeric":
            raise ValidationError(f"task is regression but label {label!r} is {label_stats['type']}")
        label_mean, label_std = float(label_stats["mean"]), float(label_stats.get("std") or 1.0)
    return ModelSpec(features, label, task, classes, label_mean, label_std)


def shards(dataset: str | Path) -> list[Path]:
    path = Path(dataset)
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    if not files or not files[0].exists():
        raise ConfigError(f"dataset {str(dataset)!r} has no Parquet shards")
    return files


def check_columns(dataset: str | Path, spec: ModelSpec, need_label: bool = True) -> None:
    names = set(pq.read_schema(shards(dataset)[0]).names)
    missing = [f.name for f in spec.features if f.name not in names]
    if need_label and spec.label not in names:
        missing.append(spec.label)
    if missing:
        raise ValidationError(f"column(s) {', '.join(repr(m) for m in missing)} of the model's schema are "
                              f"missing from {str(dataset)!r}; it has: {', '.join(sorted(names))}")


NULL_INT = np.iinfo(np.int64).min  # a null integer category at serving time: never in a vocabulary


def category_ids(column: pa.Array | pa.ChunkedArray, vocabulary: list[str], value_type: str = "string") -> np.ndarray:
    """Index of each value in the vocabulary plus one; 0 for nulls and unseen values.

    The same numbering as a Keras StringLookup / IntegerLookup(vocabulary, num_oov_indices=1), so a
    model trained on these ids serves raw values behind that lookup layer.
    """
    arrow_type = pa.int64() if value_type == "int64" else pa.string()
    values = pa.array([int(v) for v in vocabulary] if value_type == "int64" else vocabulary, arrow_type)
    index = pc.index_in(pc.cast(column, arrow_type), value_set=values)
    return (pc.fill_null(index, -1).to_numpy(zero_copy_only=False) + 1).astype(np.int32)


def features_to_numpy(batch: pa.RecordBatch | pa.Table, spec: ModelSpec,
                      encode_categories: bool = False) -> dict[str, np.ndarray]:
    """Model inputs: numbers as float32 (null -> NaN); categories as strings (null -> ""), or as
    vocabulary ids when encode_categories (the fast path training uses)."""
    out = {}
    for feature in spec.features:
        column = batch.column(feature.name)
        if feature.kind == "numeric":
            out[feature.name] = pc.cast(column, pa.float32()).to_numpy(zero_copy_only=False).astype(np.float32)
        elif encode_categories:
            out[feature.name] = category_ids(column, feature.vocabulary, feature.value_type)
        elif feature.value_type == "int64":
            out[feature.name] = pc.fill_null(pc.cast(column, pa.int64()), NULL_INT).to_numpy(zero_copy_only=False)
        else:
            strings = pc.fill_null(pc.cast(column, pa.string()), "")
            out[feature.name] = np.asarray(strings.to_numpy(zero_copy_only=False), dtype=object)
    return out


def label_to_numpy(batch: pa.RecordBatch | pa.Table, spec: ModelSpec) -> np.ndarray:
    column = batch.column(spec.label)
    if spec.task == "regression":
        return ((pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False) - spec.label_mean)
                / spec.label_std).astype(np.float32)
    values = pc.cast(column, pa.string())
    index = pc.index_in(values, value_set=pa.array(spec.classes))
    if index.null_count:
        unknown = pc.filter(values, pc.is_null(index)).unique().to_pylist()[:5]
        raise ValidationError(f"label {spec.label!r} has value(s) {unknown} not among the training classes "
                              f"{spec.classes}")
    return index.to_numpy(zero_copy_only=False).astype(np.int32)


def iter_batches(dataset: str | Path, spec: ModelSpec, batch_size: int, with_label: bool = True,
                 shuffle_seed: int | None = None, encode_categories: bool = False,
                 share: tuple[int, int] = (0, 1)) -> Iterator:
    """(features, label) numpy batches streamed shard by shard; rows shuffled within each read.

    share (index, count): this reader's part of the rows, disjoint from the other count - 1 readers':
    whole shards (every count-th) when there are at least count shards, else every count-th row."""
    index, count = share
    files = shards(dataset)
    stripe = count > 1 and len(files) < count
    if count > 1 and not stripe:
        files = files[index::count]
    rng = np.random.default_rng(shuffle_seed) if shuffle_seed is not None else None
    if rng is not None:
        files = [files[i] for i in rng.permutation(len(files))]
    columns = [f.name for f in spec.features] + ([spec.label] if with_label else [])
    for path in files:
        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(batch_size=batch_size, columns=columns):
            if stripe:
                # every reader cuts the same record batches, so the stripes are disjoint
                batch = batch.take(pa.array(np.arange(index, batch.num_rows, count)))
            if rng is not None:
                batch = batch.take(pa.array(rng.permutation(batch.num_rows)))
            features = features_to_numpy(batch, spec, encode_categories)
            if with_label:
                yield features, label_to_numpy(batch, spec)
            else:
                yield features
