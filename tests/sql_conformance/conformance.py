"""Load the conformance cases and run one on the local warehouse, reading values and BigQuery types."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import yaml

from kfkit.warehouse import sql
from kfkit.warehouse.local import with_bigquery_types

CASES_FILE = Path(__file__).with_name("cases.yaml")
DOC_BASE = "https://cloud.google.com/bigquery/docs/reference/standard-sql/"


@dataclass
class Case:
    section: str
    doc: str
    sql: str
    value: Any = None
    type: str | None = None
    error: str | None = None
    approx: bool = False
    ordered: bool = True
    note: str = ""
    params: dict = field(default_factory=dict)
    rows: list | None = None
    columns: dict | None = None

    @property
    def id(self) -> str:
        return f"{self.section}: {self.sql}"[:140]

    @property
    def whole(self) -> bool:
        """A whole query (rows and columns, or an error case written as SELECT/WITH), not one expression."""
        return self.rows is not None or self.sql.lstrip().upper().startswith(("SELECT ", "WITH "))

    @property
    def refused(self) -> bool:
        """A documented refusal of the local warehouse: BigQuery answers, kfkit declines (note "refused...")."""
        return self.error is not None and self.note.startswith("refused")

    @property
    def url(self) -> str:
        return DOC_BASE + self.doc


def load_cases() -> list[Case]:
    cases = []
    for section in yaml.safe_load(CASES_FILE.read_text()):
        name = section["section"]
        for raw in section.get("cases", []) + section.get("param_cases", []):
            cases.append(Case(section=name, **raw))
        for raw in section.get("query_cases", []):
            raw = dict(raw)
            cases.append(Case(section=name, sql=raw.pop("query"), **raw))
    return cases


def bigquery_type_name(arrow: pa.DataType) -> str:
    """The BigQuery type the Storage Read API would deliver as this Arrow type."""
    if pa.types.is_int64(arrow):
        return "INT64"
    if pa.types.is_float64(arrow):
        return "FLOAT64"
    if pa.types.is_decimal(arrow):
        return "NUMERIC" if (arrow.precision, arrow.scale) == (38, 9) else f"DECIMAL({arrow.precision},{arrow.scale})"
    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow):
        return "STRING"
    if pa.types.is_binary(arrow):
        return "BYTES"
    if pa.types.is_boolean(arrow):
        return "BOOL"
    if pa.types.is_date32(arrow):
        return "DATE"
    if pa.types.is_timestamp(arrow):
        return "TIMESTAMP" if arrow.tz == "UTC" else ("DATETIME" if arrow.tz is None else f"TIMESTAMP[{arrow.tz}]")
    if pa.types.is_time64(arrow):
        return "TIME"
    if pa.types.is_list(arrow):
        return f"ARRAY<{bigquery_type_name(arrow.value_type)}>"
    if pa.types.is_struct(arrow):
        return "STRUCT<" + ", ".join(f"{f.name} {bigquery_type_name(f.type)}" for f in arrow) + ">"
    return str(arrow)


def _text(value: Any, type_name: str) -> Any:
    """Values as the cases write them: dates and times as BigQuery's CAST(... AS STRING) text."""
    if value is None:
        return None
    if type_name == "DATE":
        return value.isoformat()
    if type_name == "DATETIME":
        text = value.strftime("%Y-%m-%d %H:%M:%S")
        return text + (f".{value.microsecond:06d}".rstrip("0") if value.microsecond else "")
    if type_name == "TIMESTAMP":
        text = value.astimezone(__import__("datetime").timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        return text + (f".{value.microsecond:06d}".rstrip("0") if value.microsecond else "") + "+00"
    if type_name == "BYTES":
        return repr(bytes(value))  # as a BYTES literal: b'a,b', b'\xd1\x87'
    if type_name == "NUMERIC":
        text = format(value.normalize(), "f")
        return text
    if type_name.startswith("ARRAY<"):
        inner = type_name[6:-1]
        return [_text(v, inner) for v in value]
    return value


def connection() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    sql.register_functions(con)
    return con


def run(con, query: str, params: dict | None = None) -> pa.Table:
    """A BigQuery query through the local warehouse's path: transpile, then cast to BigQuery's types."""
    duck_sql = with_bigquery_types(con, sql.to_duckdb(query), params, query)
    return fetch(con.sql(duck_sql, params=params or None), query)


def fetch(relation, query: str) -> pa.Table:
    """The result table; an error while running as the local warehouse reports it (local.explain_error)."""
    from kfkit.errors import QueryError
    from kfkit.warehouse.local import explain_error

    try:
        return relation.to_arrow_table()
    except duckdb.Error as exc:
        raise QueryError(explain_error(exc, query)) from exc


def evaluate(con, case: Case) -> tuple[list, dict[str, str]]:
    """(rows, {column: BigQuery type}) of a case's query."""
    query = case.sql if case.whole else f"SELECT {case.sql} AS v"
    table = run(con, query, case.params)
    types = {f.name: bigquery_type_name(f.type) for f in table.schema}
    rows = [[_text(v, types[name]) for name, v in row.items()] for row in table.to_pylist()]
    return rows, types


def same(actual: Any, expected: Any, approx: bool) -> bool:
    if isinstance(expected, float) and isinstance(actual, (int, float)):
        if math.isnan(expected):
            return math.isnan(actual)
        if approx:
            return math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-12)
        return float(actual) == expected
    if isinstance(expected, list) and isinstance(actual, list):
        return len(actual) == len(expected) and all(same(a, e, approx) for a, e in zip(actual, expected))
    if isinstance(expected, dict) and isinstance(actual, dict):
        return actual.keys() == expected.keys() and all(same(actual[k], expected[k], approx) for k in expected)
    return type(actual) is type(expected) and actual == expected or (actual is None and expected is None)
