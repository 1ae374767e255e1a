"""Ground truth for a canary: {request key: label} from a warehouse table, for every canary source."""

from __future__ import annotations

from typing import Any

from kfkit.errors import ConfigError


def read_labels(batches, table: str) -> dict[str, Any]:
    """{request key: label} from the batches of `SELECT key AS k, label AS y FROM table`."""
    labels = {}
    for batch in batches:
        for key, label in zip(batch.column("k").to_pylist(), batch.column("y").to_pylist()):
            if key is not None:
                labels[str(key)] = label
    if not labels:
        raise ConfigError(f"labels_table {table!r} holds no labelled key")
    return labels


def labels_query(table: str, request_key: str, label_column: str) -> str:
    if not (request_key and label_column):
        raise ConfigError("labels_table needs request_key (the instance field and table column joining requests "
                          "to labels) and label_column")
    return f"SELECT `{request_key}` AS k, `{label_column}` AS y FROM `{table}`"


def warehouse_labels(root, table: str, request_key: str, label_column: str) -> dict[str, Any]:
    """{request key: label} from a table of the local warehouse under root."""
    from kfkit.warehouse.local import LocalWarehouse

    return read_labels(LocalWarehouse(root).query_batches(labels_query(table, request_key, label_column)), table)
