"""BigQuery SQL on DuckDB: transpile with sqlglot, map table names, and supply FARM_FINGERPRINT.

Table names: BigQuery's `project.dataset.table` becomes the DuckDB table `"project.dataset".table`
(one DuckDB schema per BigQuery dataset), so the same query text runs on both backends.
"""

from __future__ import annotations

import re
from typing import Iterable

import farmhash
import pyarrow as pa
import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.dialects.bigquery import BigQuery
from sqlglot.errors import ErrorLevel, ParseError
from sqlglot.jsonpath import parse as parse_json_path

from kfkit.errors import QueryError

DEFAULT_LOCAL_PROJECT = "local-project"

_NONDETERMINISTIC = (exp.Rand, exp.Uuid, exp.CurrentTimestamp, exp.CurrentDate,
                     exp.CurrentDatetime, exp.CurrentTime)
_NONDETERMINISTIC_NAMES = {"RAND", "RANDOM", "GENERATE_UUID", "UUID", "NOW", "SYSDATE"}
_RANKING = (exp.RowNumber,)


def fingerprint64(value: str | bytes) -> int:
    """BigQuery's FARM_FINGERPRINT: FarmHash Fingerprint64 of the UTF-8 bytes, as a signed INT64."""
    unsigned = farmhash.fingerprint64(value)
    return unsigned - (1 << 64) if unsigned >= (1 << 63) else unsigned


def _farm_fingerprint_udf(column: pa.Array) -> pa.Array:
    from kfkit.warehouse.farmhash import fingerprint64_arrow
    hashed = fingerprint64_arrow(column)
    if not column.null_count:
        return pa.array(hashed, type=pa.int64())
    return pa.array(hashed, type=pa.int64(), mask=pa.compute.is_null(column).to_numpy(zero_copy_only=False))


def register_functions(con) -> None:
    """Give a DuckDB connection BigQuery's time zone, functions and macros (kfkit.warehouse.semantics)."""
    import duckdb
    from duckdb.sqltypes import BIGINT, VARCHAR

    from kfkit.warehouse import json_functions, long_tail, numeric, semantics, strings

    con.execute("SET TimeZone = 'UTC'")  # BigQuery's default time zone for every function
    udfs = [("farm_fingerprint", _farm_fingerprint_udf, [VARCHAR], BIGINT, "special"),
            ("bq_to_json_string", json_functions.to_json_string_udf, [VARCHAR, VARCHAR], VARCHAR, "special"),
            ("bq_json_text", json_functions.json_text_udf, [VARCHAR], VARCHAR, "default")]
    for name, function, args, result, nulls in udfs:
        try:
            con.create_function(name, function, args, result, type="arrow", null_handling=nulls,
                                side_effects=False)
        except (duckdb.NotImplementedException, duckdb.CatalogException):  # already registered
            pass
    try:
        con.create_function("bq_instr", long_tail.instr, [VARCHAR, VARCHAR, BIGINT, BIGINT], BIGINT,
                            null_handling="special", side_effects=False)
    except (duckdb.NotImplementedException, duckdb.CatalogException):  # already registered
        pass
    con.execute(json_functions.DOUBLE_TO_STRING_MACRO)
    json_functions.register(con)
    numeric.register(con)  # its Python functions; its macros come with semantics.all_macros()
    strings.register(con)  # before the macros: some call its Python functions
    for macro in semantics.all_macros():
        con.execute(macro)


class _BigQuery(BigQuery):
    """BigQuery as sqlglot reads it, with each JSONPath literal's text kept (meta["kfkit_path"]) for the
    local warehouse's JSON functions, which check it as BigQuery does; a path sqlglot cannot read stays a
    literal (those functions reject it), not a warning."""

    def to_json_path(self, path):
        if isinstance(path, exp.Literal) and path.is_string:
            try:
                parsed = parse_json_path(path.name, self)
            except Exception:
                return path
            parsed.meta["kfkit_path"] = path.name
            return parsed
        return super().to_json_path(path)


_DIALECT = _BigQuery()


def parse(sql: str) -> exp.Expression:
    """Parse BigQuery SQL; a syntax error names the line, column and the text near it."""
    if not sql or not sql.strip():
        raise QueryError("query is empty: give a BigQuery SELECT statement")
    try:
        statements = sqlglot.parse(sql, read=_DIALECT)
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        where = ""
        if first:
            where = f" at line {first.get('line')}, column {first.get('col')} near {first.get('highlight')!r}"
        raise QueryError(f"SQL syntax error{where}: {first.get('description', str(exc))}") from exc
    statements = [s for s in statements if s is not None]
    if len(statements) != 1:
        raise QueryError(f"expected exactly one SQL statement, got {len(statements)}")
    statement = statements[0]
    if not isinstance(statement, exp.Query):
        raise QueryError(f"expected a SELECT query, got a {statement.key.upper()} statement")
    return statement


def local_schema_name(project: str, dataset: str) -> str:
    return f"{project}.{dataset}"


def table_references(tree: exp.Expression, default_project: str) -> list[tuple[str, str, str]]:
    """(project, dataset, table) of every warehouse table the query reads (CTE names excluded)."""
    refs = []
    for table in tree.find_all(exp.Table):
        if table.args.get("db"):
            refs.append((table.catalog or default_project, table.db, table.name))
    return refs


def to_duckdb(sql: str, default_project: str = DEFAULT_LOCAL_PROJECT) -> str:
    """Transpile one BigQuery query to DuckDB SQL: BigQuery's semantics, table names mapped to local schemas."""
    from kfkit.warehouse.semantics import rewrite

    tree = rewrite(parse(sql), sql)

    def rename(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table) and node.args.get("db"):
            project = node.catalog or default_project
            node = node.copy()
            node.set("db", exp.to_identifier(local_schema_name(project, node.db), quoted=True))
            node.set("catalog", None)
        return node

    # sqlglot's default only warns when it drops what DuckDB cannot express (an argument, a modifier):
    # the query would run and answer differently, so anything dropped is a refusal
    generator = Dialect.get_or_raise("duckdb").generator(unsupported_level=ErrorLevel.IGNORE)
    text = generator.generate(tree.transform(rename))
    dropped = [m for m in generator.unsupported_messages if not any(m.startswith(p) for p in SAME_ANSWER)]
    if dropped:
        raise QueryError(_unsupported_message(sql, dropped[0]))
    return text


# What sqlglot warns of but kfkit's warehouse answers as BigQuery does: every connection runs in UTC
# (register_functions), BigQuery's time zone for EXTRACT, and AT TIME ZONE is rewritten (semantics._extract)
SAME_ANSWER = ("EXTRACT from TIMESTAMPTZ / TIMESTAMPLTZ may produce different results",)


def _unsupported_message(sql: str, message: str) -> str:
    """sqlglot's 'STRPOS does not support the occurrence parameter.' as kfkit's refusal, with BigQuery's
    function name and its line."""
    from kfkit.warehouse.semantics import line_of

    reason = message.strip().splitlines()[0].rstrip(".")
    word = re.match(r"[A-Za-z_]+", reason)
    name = BIGQUERY_NAMES.get(word.group(0).upper(), word.group(0).upper()) if word else ""
    line = line_of(sql, name) if name else None
    where = f"line {line}: " if line else ""
    return (f"{where}{name}: the local warehouse cannot answer this as BigQuery would ({reason}: the "
            f"translation to DuckDB would drop it); write it another way or run it on BigQuery")


# sqlglot names a construct by its DuckDB spelling in what it cannot translate
BIGQUERY_NAMES = {"STRPOS": "INSTR", "REGEXP_EXTRACT": "REGEXP_EXTRACT", "REGEXP_MATCHES": "REGEXP_CONTAINS"}


def _nondeterminism(node: exp.Expression) -> str | None:
    for sub in node.walk():
        if isinstance(sub, _NONDETERMINISTIC):
            return sub.sql(dialect="bigquery")
        if isinstance(sub, exp.Anonymous) and str(sub.this).upper() in _NONDETERMINISTIC_NAMES:
            return sub.sql(dialect="bigquery")
        if isinstance(sub, exp.Window) and isinstance(sub.this, _RANKING) and not sub.args.get("order"):
            return sub.sql(dialect="bigquery")
    return None


def _sources(select: exp.Select, ctes: dict[str, exp.Expression]) -> list[exp.Expression]:
    """The queries a SELECT reads its columns from: CTEs it names and subqueries in FROM/JOIN."""
    found = []
    items = [select.args.get("from_") or select.args.get("from")] + list(select.args.get("joins") or [])
    for item in items:
        if item is None:
            continue
        node = item.this
        if isinstance(node, exp.Table) and not node.args.get("db") and node.name in ctes:
            found.append(ctes[node.name])
        elif isinstance(node, exp.Subquery):
            found.append(node.this)
    return found


def _selects(query: exp.Expression) -> list[exp.Select]:
    if isinstance(query, exp.Select):
        return [query]
    if isinstance(query, exp.SetOperation):
        return _selects(query.this) + _selects(query.expression)
    if isinstance(query, exp.Subquery):
        return _selects(query.this)
    return []


def _lineage_reason(node: exp.Expression, select: exp.Select, ctes: dict, depth: int = 0,
                    names: set[str] | None = None) -> str | None:
    """The nondeterministic expression an output expression depends on, following columns into CTEs.

    `names` are the column names a `*` stands for (None: all of them).
    """
    is_star = isinstance(node, exp.Star)
    reason = None if is_star else _nondeterminism(node)
    if reason or depth > 20:
        return reason
    if not is_star:
        names = {c.name.lower() for c in node.find_all(exp.Column)}
    for source in _sources(select, ctes):
        for inner in _selects(source):
            for projection in inner.expressions:
                if isinstance(projection, exp.Star):
                    reason = _lineage_reason(projection, inner, ctes, depth + 1, names)
                elif names is None or projection.alias_or_name.lower() in names:
                    reason = _lineage_reason(projection, inner, ctes, depth + 1)
                if reason:
                    return reason
    return None


def nondeterministic_columns(sql: str, columns: Iterable[str] | None = None) -> dict[str, str]:
    """Output columns whose value changes from run to run (RAND(), CURRENT_TIMESTAMP(), ...).

    Follows each output column back through CTEs and subqueries, so `RAND() AS k` in a CTE is found
    when the outer query selects `k`, while a CURRENT_DATETIME() that only filters rows, or feeds a
    column the output does not carry, is not. `columns=None` checks every output column.
    Returns {column: offending expression}.
    """
    tree = parse(sql)
    ctes = {cte.alias: cte.this for cte in tree.find_all(exp.CTE)}
    wanted = None if columns is None else {c.lower() for c in columns}
    found: dict[str, str] = {}
    for select in _selects(tree):
        for projection in select.expressions:
            name = projection.alias_or_name
            if wanted is not None and name.lower() not in wanted and not isinstance(projection, exp.Star):
                continue
            reason = _lineage_reason(projection, select, ctes)
            if reason:
                found.setdefault(name, reason)
    return found
