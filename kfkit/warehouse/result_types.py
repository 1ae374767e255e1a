"""Result columns as BigQuery types them: what the local warehouse hands to ingest.

BigQuery has INT64, FLOAT64, NUMERIC (38, 9), BIGNUMERIC, STRING, BYTES, BOOL, DATE, DATETIME,
TIMESTAMP, TIME, ARRAY, STRUCT, JSON and GEOGRAPHY; its Storage Read API delivers them as the Arrow
types in kfkit.adapters.bigquery.schema_to_arrow. DuckDB has more (INTEGER literals, HUGEINT sums,
narrow decimals, FLOAT, nanosecond timestamps, ...): each result column is cast to the DuckDB type
whose Arrow form is BigQuery's, and a column with no BigQuery equivalent is refused by name.
"""

from __future__ import annotations

import re

from kfkit.errors import QueryError

_INTEGERS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
             "UBIGINT", "UHUGEINT", "NULL", '"NULL"'}
_KEEP = {"DOUBLE", "VARCHAR", "BLOB", "BOOLEAN", "DATE", "TIME", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE"}
_AS_TIMESTAMP = {"TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S"}
GEOGRAPHY_FIELD = "kfkit_geography_lng"

# DuckDB type -> the BigQuery type it stands for, once cast (for docs and error messages)
BIGQUERY_NAMES = {"BIGINT": "INT64", "DOUBLE": "FLOAT64", "DECIMAL(38,9)": "NUMERIC", "VARCHAR": "STRING",
                  "BLOB": "BYTES", "BOOLEAN": "BOOL", "DATE": "DATE", "TIME": "TIME", "TIMESTAMP": "DATETIME",
                  "TIMESTAMP WITH TIME ZONE": "TIMESTAMP"}


def split_fields(body: str) -> list[str]:
    """The top-level, comma-separated parts of a DuckDB STRUCT(...) body (quotes and parentheses respected)."""
    parts, depth, current, quoted = [], 0, [], False
    for ch in body:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        if ch == "," and depth == 0 and not quoted:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    if current:
        parts.append("".join(current).strip())
    return parts


def bigquery_type(duck: str, column: str) -> str:
    """The DuckDB type to cast `duck` to so that it is a BigQuery type; QueryError if there is none."""
    duck = duck.strip()
    upper = duck.upper()
    if upper.endswith("[]"):
        return bigquery_type(duck[:-2], column) + "[]"
    if re.match(r"^[A-Z]+\[\d+\]$", upper):  # fixed-size ARRAY
        return bigquery_type(duck[: duck.rindex("[")], column) + "[]"
    if upper.startswith("STRUCT("):
        fields = []
        for part in split_fields(duck[duck.index("(") + 1: -1]):
            if part.startswith('"'):
                end = part.index('"', 1)
                name, rest = part[: end + 1], part[end + 1:]
            else:
                name, _, rest = part.partition(" ")
            if name.strip('"') == GEOGRAPHY_FIELD:
                raise QueryError(
                    f"result column {column!r} is a GEOGRAPHY, which the local warehouse cannot carry into "
                    "a dataset; select ST_ASTEXT(...) or ST_X(...)/ST_Y(...) instead")
            if re.search(r"(^|[^\w\"])JSON($|[^\w\"])", rest.upper()):
                raise QueryError(
                    f"result column {column!r} is a STRUCT holding a JSON field, whose text the local warehouse "
                    "does not rewrite as BigQuery writes JSON; select the field on its own, or TO_JSON_STRING(...)")
            fields.append(f"{name} {bigquery_type(rest, column)}")
        return f"STRUCT({', '.join(fields)})"
    if upper in _INTEGERS:
        return "BIGINT"
    if upper == "FLOAT":
        return "DOUBLE"
    if upper in _AS_TIMESTAMP:
        return "TIMESTAMP"
    if upper in ("JSON",) or upper.startswith("ENUM("):
        return "VARCHAR"
    if upper in _KEEP:
        return "TIMESTAMP WITH TIME ZONE" if upper == "TIMESTAMP WITH TIME ZONE" else upper
    match = re.match(r"^DECIMAL\((\d+),\s*(\d+)\)$", upper)
    if match:
        precision, scale = int(match.group(1)), int(match.group(2))
        if scale <= 9 and precision - scale <= 29:
            return "DECIMAL(38,9)"
        raise QueryError(f"result column {column!r} is a {duck} that does not fit BigQuery's NUMERIC (38, 9); "
                         "CAST it to NUMERIC or FLOAT64 in the query")
    raise QueryError(f"result column {column!r} has the type {duck}, which BigQuery does not have; "
                     "CAST it to a BigQuery type (STRING, INT64, FLOAT64, ...) in the query")


def projection(columns: list[tuple[str, str]]) -> str | None:
    """A SELECT list over `_q` casting every column to its BigQuery type, or None if none needs it."""
    items, changed = [], False
    for name, duck in columns:
        target = bigquery_type(duck, name)
        quoted = '"' + name.replace('"', '""') + '"'
        if duck.upper().replace(" ", "") in ("JSON", "JSON[]"):
            # a JSON value as BigQuery writes it (json_functions.json_text): members sorted, numbers canonical
            changed = True
            text = ("bq_json_text(CAST(_q.{0} AS VARCHAR))" if duck.upper() == "JSON" else
                    "list_transform(_q.{0}, lambda e: bq_json_text(CAST(e AS VARCHAR)))").format(quoted)
            items.append(f"{text} AS {quoted}")
        elif target.replace(" ", "") != duck.upper().replace(" ", ""):
            changed = True
            items.append(f"CAST(_q.{quoted} AS {target}) AS {quoted}")
        else:
            items.append(f"_q.{quoted}")
    return ", ".join(items) if changed else None
