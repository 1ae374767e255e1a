"""What the statistics of validate record, on every backend: quantiles, bins, domain sizes, the
schema's version, and which column types count as numeric or categorical.

Shared by validate's local path and its BigQuery path (bigquery_stats), so neither imports the other
for them.
"""

from __future__ import annotations

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
HISTOGRAM_BINS = 20
MAX_DOMAIN = 1000
SCHEMA_VERSION = 1


def column_kind(duck_type: str) -> str:
    t = duck_type.upper()
    if t.startswith(("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
                     "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE", "DECIMAL", "REAL")):
        return "numeric"
    if t in ("VARCHAR", "BOOLEAN") or t.startswith("ENUM"):
        return "categorical"
    return "other"


def is_integer_type(duck_type: str) -> bool:
    return duck_type.upper().startswith(("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT",
                                         "UINTEGER", "UBIGINT"))


def edges_between(mn: float, mx: float, bins: int) -> list[float]:
    """bins + 1 equally spaced edges from mn to mx, each finite whatever the range."""
    return [mn * (1 - i / bins) + mx * (i / bins) for i in range(bins)] + [mx]
