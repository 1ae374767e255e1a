"""Synthetic tabular data for tests and benchmarks: numeric and categorical features and a label.

The label depends on the features (a logistic model over a few of them), so a model can learn it.
Generated in chunks and streamed, so 10 million rows never sit in memory at once.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pyarrow as pa

CATEGORIES = tuple(f"v{i:02d}" for i in range(12))


def schema(numeric: int, categorical: int, task: str = "binary") -> pa.Schema:
    label_type = pa.float64() if task == "regression" else pa.int64()
    fields = [pa.field("id", pa.int64())]
    fields += [pa.field(f"num_{i:02d}", pa.float64()) for i in range(numeric)]
    fields += [pa.field(f"cat_{i:02d}", pa.string()) for i in range(categorical)]
    fields.append(pa.field("label", label_type))
    return pa.schema(fields)


def batches(rows: int, numeric: int = 15, categorical: int = 4, seed: int = 0,
            chunk_rows: int = 500_000, task: str = "binary", null_fraction: float = 0.0,
            shift: float = 0.0) -> Iterator[pa.RecordBatch]:
    """Yield record batches of synthetic rows.

    shift moves every numeric feature's mean by that many standard deviations and skews the
    categories, which gives drifted data for monitoring tests.
    """
    if task not in ("binary", "multiclass", "regression"):
        raise ValueError(f"task must be binary, multiclass or regression, got {task!r}")
    rng = np.random.default_rng(seed)
    weights = np.random.default_rng(12345).normal(size=numeric)
    cat_weights = np.random.default_rng(54321).normal(size=(categorical, len(CATEGORIES)))
    out_schema = schema(numeric, categorical, task)
    cat_p = np.linspace(1.0, 2.0 + 4 * shift, len(CATEGORIES))
    cat_p /= cat_p.sum()
    done = 0
    while done < rows:
        n = min(chunk_rows, rows - done)
        columns = [pa.array(np.arange(done, done + n, dtype=np.int64))]
        x = rng.normal(loc=shift, size=(n, numeric))
        score = x @ weights * 0.5
        for j in range(numeric):
            col = x[:, j]
            mask = rng.random(n) < null_fraction if null_fraction else None
            columns.append(pa.array(col, mask=mask))
        for j in range(categorical):
            codes = rng.choice(len(CATEGORIES), size=n, p=cat_p)
            score += cat_weights[j, codes] * 0.5
            dictionary = pa.array(CATEGORIES)
            columns.append(pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), dictionary)
                           .cast(pa.string()))
        noise = rng.logistic(size=n)
        if task == "binary":
            label = (score + noise > 0).astype(np.int64)
        elif task == "multiclass":
            label = np.digitize(score + noise, [-1.0, 1.0]).astype(np.int64)
        else:
            label = score + rng.normal(scale=0.5, size=n)
        columns.append(pa.array(label))
        yield pa.RecordBatch.from_arrays(columns, schema=out_schema)
        done += n


def reader(rows: int, **kwargs) -> pa.RecordBatchReader:
    numeric = kwargs.get("numeric", 15)
    categorical = kwargs.get("categorical", 4)
    task = kwargs.get("task", "binary")
    return pa.RecordBatchReader.from_batches(schema(numeric, categorical, task),
                                             batches(rows, **kwargs))


def write_to_warehouse(warehouse, table: str, rows: int, **kwargs) -> str:
    """Stream synthetic rows into a local warehouse table (replacing it)."""
    return warehouse.write_table(table, reader(rows, **kwargs))
