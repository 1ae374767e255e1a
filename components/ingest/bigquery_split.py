"""The split, the snapshot id and the export, as BigQuery SQL: ingest at scale with no row in the component.

The expressions are the ones the streaming path computes in Python (components/ingest/ingest.py):
a row's bucket is ABS(MOD(FARM_FINGERPRINT(key), 10000)) where key is the split key column cast to
STRING (NULL as ''), or the key columns so cast joined with U+001F; a split holds the buckets from
the previous split's bound up to its own. The snapshot id is the row count and the sum of the
rows' key fingerprints modulo 2^64, summed as NUMERIC so BigQuery never overflows INT64.

Only key columns whose CAST to STRING the streaming path spells exactly as BigQuery does (STRING,
INT64, BOOL, DATE, and FLOAT64 through ZetaSQL's RoundTripDoubleToString, kfkit.warehouse.json_functions) can be
hashed on either side with the same result; any other key type is refused with the column named,
never split differently.
"""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa

from kfkit.errors import IngestError

BUCKETS = 10_000
KEY_SEPARATOR_SQL = r"'\x1f'"  # the streaming path's U+001F separator, as a BigQuery escape
FINGERPRINT_COLUMN = "__kfkit_fingerprint"
# Arrow's cast to string and BigQuery's CAST(... AS STRING) spell these types the same way
HASHABLE_TYPES = {pa.string(): "STRING", pa.int64(): "INT64", pa.bool_(): "BOOL", pa.date32(): "DATE",
                  pa.float64(): "FLOAT64"}


def quote(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def string_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def key_sql(schema: pa.Schema, key_columns: list[str] | None) -> str:
    """The split key as a BigQuery STRING expression, or IngestError naming the column it cannot hash."""
    names = key_columns if key_columns is not None else schema.names
    parts = []
    for name in names:
        kind = schema.field(name).type
        if kind not in HASHABLE_TYPES:
            what = "the whole row is the split key and column" if key_columns is None else "split key column"
            raise IngestError(
                f"{what} {name!r} is {kind}: BigQuery's CAST to STRING of that type is not spelled as the "
                "local backend spells it, so the two would split rows differently; key the split on STRING, "
                "INT64, FLOAT64, BOOL or DATE column(s) (split_key), or keep the result under export_threshold_bytes "
                "so it is split while streaming")
        value = quote(name) if kind == pa.string() else f"CAST({quote(name)} AS STRING)"
        parts.append(f"IFNULL({value}, '')")
    if len(parts) == 1:
        return parts[0]
    return "CONCAT(" + f", {KEY_SEPARATOR_SQL}, ".join(parts) + ")"


def fingerprint_sql(schema: pa.Schema, key_columns: list[str] | None) -> str:
    return f"FARM_FINGERPRINT({key_sql(schema, key_columns)})"


def bucket_sql(fingerprint: str) -> str:
    return f"ABS(MOD({fingerprint}, {BUCKETS}))"


def bucket_ranges(upper_bounds: list[int], names: list[str]) -> dict[str, tuple[int, int]]:
    """[low, high) bucket range of each split."""
    ranges, low = {}, 0
    for name, high in zip(names, upper_bounds):
        ranges[name] = (low, high)
        low = high
    return ranges


def condition_sql(bucket: str, low: int, high: int) -> str:
    if low >= high:
        return "FALSE"
    return f"{bucket} >= {low} AND {bucket} < {high}"


def summary_sql(table: str, schema: pa.Schema, key_columns: list[str] | None,
                ranges: dict[str, tuple[int, int]]) -> str:
    """One row: the row count, the NUMERIC sum of the key fingerprints, and the rows of each split."""
    bucket = bucket_sql(FINGERPRINT_COLUMN)
    counts = ",\n  ".join(f"COUNTIF({condition_sql(bucket, low, high)}) AS {quote('rows_' + name)}"
                          for name, (low, high) in ranges.items())
    return (f"SELECT\n  COUNT(*) AS row_count,\n  SUM(CAST({FINGERPRINT_COLUMN} AS NUMERIC)) AS fingerprint_sum,\n"
            f"  {counts}\nFROM (SELECT {fingerprint_sql(schema, key_columns)} AS {FINGERPRINT_COLUMN} "
            f"FROM {quote(table)})")


def split_select_sql(table: str, schema: pa.Schema, key_columns: list[str] | None, low: int, high: int) -> str:
    """The rows of one split of `table`, every column as it is."""
    return (f"SELECT * FROM {quote(table)}\n"
            f"WHERE {condition_sql(bucket_sql(fingerprint_sql(schema, key_columns)), low, high)}")


def export_sql(select: str, uri_prefix: str) -> str:
    """EXPORT DATA of a SELECT as Snappy Parquet shards part-*.parquet under uri_prefix (replaced)."""
    if not uri_prefix.startswith("gs://"):
        raise IngestError(f"BigQuery exports only to Cloud Storage; {uri_prefix!r} is not a gs:// prefix")
    uri = uri_prefix.rstrip("/") + "/part-*.parquet"
    return (f"EXPORT DATA OPTIONS (uri = {string_literal(uri)}, format = 'PARQUET', compression = 'SNAPPY', "
            f"overwrite = true) AS\n{select}")


def snapshot_id(row_count: int, fingerprint_sum) -> str:
    """The streaming path's snapshot id from the summary row: count and unsigned 64-bit fingerprint sum."""
    total = int(Decimal(str(fingerprint_sum))) if fingerprint_sum is not None else 0
    return f"{int(row_count)}-{total % 2**64:016x}"
