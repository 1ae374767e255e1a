"""The embedded warehouse: a DuckDB file under the local root that answers BigQuery SQL.

It ships with the public tables the demos read, under their BigQuery names and schemas:
`bigquery-public-data.ml_datasets.penguins` (Palmer penguins, BigQuery's columns and values) and
`bigquery-public-data.chicago_taxi_trips.taxi_trips` (the 15,002-trip sample of kfkit/data, in
BigQuery's column order and types; the columns the sample lacks are NULL: unique_key, taxi_id,
trip_end_timestamp, tolls, extras, trip_total, pickup_location, dropoff_location).
`kfkit-samples.chicago_taxi.trips` is a view with the sample's own columns, kept for old queries.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import duckdb
import pyarrow as pa

from kfkit.warehouse import sql as bqsql
from kfkit.warehouse import result_types
from kfkit.warehouse.semantics import line_of
from kfkit.config import local_root
from kfkit.errors import QueryError

PENGUINS_TABLE = "bigquery-public-data.ml_datasets.penguins"
TAXI_TABLE = "bigquery-public-data.chicago_taxi_trips.taxi_trips"
TAXI_SAMPLE_VIEW = "kfkit-samples.chicago_taxi.trips"

# bigquery-public-data.chicago_taxi_trips.taxi_trips, BigQuery's order and types; None: not in the sample.
_TAXI_COLUMNS = {
    "unique_key": (None, "VARCHAR"),
    "taxi_id": (None, "VARCHAR"),
    "trip_start_timestamp": ("to_timestamp(trip_start_timestamp)", "TIMESTAMPTZ"),
    "trip_end_timestamp": (None, "TIMESTAMPTZ"),
    "trip_seconds": ("trip_seconds", "BIGINT"),
    "trip_miles": ("trip_miles", "DOUBLE"),
    "pickup_census_tract": ("pickup_census_tract", "BIGINT"),
    "dropoff_census_tract": ("dropoff_census_tract", "BIGINT"),
    "pickup_community_area": ("pickup_community_area", "BIGINT"),
    "dropoff_community_area": ("dropoff_community_area", "BIGINT"),
    "fare": ("fare", "DOUBLE"),
    "tips": ("tips", "DOUBLE"),
    "tolls": (None, "DOUBLE"),
    "extras": (None, "DOUBLE"),
    "trip_total": (None, "DOUBLE"),
    "payment_type": ("payment_type", "VARCHAR"),
    "company": ("company", "VARCHAR"),
    "pickup_latitude": ("pickup_latitude", "DOUBLE"),
    "pickup_longitude": ("pickup_longitude", "DOUBLE"),
    "pickup_location": (None, "VARCHAR"),
    "dropoff_latitude": ("dropoff_latitude", "DOUBLE"),
    "dropoff_longitude": ("dropoff_longitude", "DOUBLE"),
    "dropoff_location": (None, "VARCHAR"),
}
# the sample's own columns (TFX's selection: month, hour and day of week of the start, UNIX seconds)
_TAXI_SAMPLE_SELECT = (
    "SELECT pickup_community_area, fare, CAST(month(trip_start_timestamp) AS BIGINT) AS trip_start_month, "
    "CAST(hour(trip_start_timestamp) AS BIGINT) AS trip_start_hour, "
    "CAST(dayofweek(trip_start_timestamp) + 1 AS BIGINT) AS trip_start_day, "
    "CAST(epoch(trip_start_timestamp) AS BIGINT) AS trip_start_timestamp, pickup_latitude, pickup_longitude, "
    "dropoff_latitude, dropoff_longitude, trip_miles, pickup_census_tract, dropoff_census_tract, payment_type, "
    "company, trip_seconds, dropoff_community_area, tips")
WAREHOUSE_FILE = "warehouse.duckdb"

# BigQuery's bigquery-public-data.ml_datasets.penguins columns, in its order, from penguins-raw.csv.
_PENGUIN_COLUMNS = {
    "species": ('"Species"', "VARCHAR"),
    "island": ('"Island"', "VARCHAR"),
    "culmen_length_mm": ('"Culmen Length (mm)"', "DOUBLE"),
    "culmen_depth_mm": ('"Culmen Depth (mm)"', "DOUBLE"),
    "flipper_length_mm": ('"Flipper Length (mm)"', "DOUBLE"),
    "body_mass_g": ('"Body Mass (g)"', "DOUBLE"),
    "sex": ('"Sex"', "VARCHAR"),
}


def _recording_failure(reader: pa.RecordBatchReader, failures: list[BaseException]) -> Iterator[pa.RecordBatch]:
    try:
        yield from reader
    except BaseException as exc:
        failures.append(exc)
        raise


def _bignumeric_fields(kind: pa.DataType, path: str) -> Iterator[str]:
    if pa.types.is_decimal256(kind):
        yield path
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
        yield from _bignumeric_fields(kind.value_type, path)
    elif pa.types.is_struct(kind):
        for field in kind:
            yield from _bignumeric_fields(field.type, f"{path}.{field.name}")


def _refuse_bignumeric(schema: pa.Schema, table: str) -> None:
    """A decimal256 column is BigQuery's BIGNUMERIC (76 digits, 38 after the point), which the local warehouse
    refuses as its queries do (DuckDB's DECIMAL stops at 38 digits); DuckDB's own error named its Arrow type."""
    found = [path for field in schema for path in _bignumeric_fields(field.type, field.name)]
    if found:
        raise QueryError(f"table {table}: column {found[0]} is a BIGNUMERIC (Arrow decimal256), which the local "
                         "warehouse does not support (DuckDB's DECIMAL holds 38 digits, BIGNUMERIC 76); CAST it to "
                         "NUMERIC or FLOAT64 before loading it")


def split_table_name(name: str, default_project: str = bqsql.DEFAULT_LOCAL_PROJECT) -> tuple[str, str, str]:
    """`project.dataset.table` (backticks optional) or `dataset.table` -> (project, dataset, table)."""
    parts = name.strip().strip("`").split(".")
    if len(parts) == 2:
        parts = [default_project, *parts]
    if len(parts) != 3 or not all(parts):
        raise QueryError(f"table name {name!r} must look like project.dataset.table or dataset.table")
    return parts[0], parts[1], parts[2]


def _quoted(project: str, dataset: str, table: str) -> str:
    schema = bqsql.local_schema_name(project, dataset).replace('"', '""')
    return f'"{schema}"."{table}"'


class LocalWarehouse:
    """A DuckDB database file under the local root, queried with BigQuery SQL."""

    def __init__(self, root: str | Path | None = None, project: str = bqsql.DEFAULT_LOCAL_PROJECT):
        self.root = local_root(root)
        self.path = self.root / WAREHOUSE_FILE
        self.project = project or bqsql.DEFAULT_LOCAL_PROJECT

    def connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        con = self._open(read_only)
        bqsql.register_functions(con)
        return con

    def _open(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        """A connection without BigQuery's functions, for catalog look-ups (registering them costs ~0.1 s)."""
        try:
            return duckdb.connect(str(self.path), read_only=read_only and self.path.exists())
        except duckdb.IOException as exc:
            raise QueryError(f"cannot open the local warehouse {str(self.path)!r}: {exc}") from exc

    # ---- tables -----------------------------------------------------------------------------
    def tables(self, con: duckdb.DuckDBPyConnection | None = None) -> list[str]:
        """Every table and view as dataset.table (project-dataset schema names), on `con` when given."""
        if con is None:
            with self._open() as own:
                return self.tables(own)
        rows = con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() UNION ALL "
            "SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1, 2").fetchall()
        return [f"{schema}.{table}" for schema, table in rows]

    def write_table(self, name: str, data: pa.Table | pa.RecordBatchReader, replace: bool = True) -> str:
        """Create (or replace) a warehouse table from Arrow data, streamed when given a reader."""
        project, dataset, table = split_table_name(name, self.project)
        _refuse_bignumeric(data.schema, f"{project}.{dataset}.{table}")
        target = _quoted(project, dataset, table)
        schema = bqsql.local_schema_name(project, dataset).replace('"', '""')
        failures: list[BaseException] = []
        if isinstance(data, pa.RecordBatchReader):
            data = pa.RecordBatchReader.from_batches(data.schema, _recording_failure(data, failures))
        with self.connect() as con:
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            con.register("_kfkit_incoming", data)
            verb = "CREATE OR REPLACE TABLE" if replace else "CREATE TABLE"
            try:
                con.execute(f"{verb} {target} AS SELECT * FROM _kfkit_incoming")
            except duckdb.Error:
                # DuckDB wraps an error of the stream's producer in its own: raise the producer's
                if failures:
                    raise failures[0] from None
                raise
            finally:
                con.unregister("_kfkit_incoming")
        return f"{project}.{dataset}.{table}"

    def rename_table(self, source: str, destination: str) -> str:
        """Replace `destination` by `source` in one transaction (readers see the old or the new table)."""
        sp, sd, st = split_table_name(source, self.project)
        dp, dd, dt = split_table_name(destination, self.project)
        if (sp, sd) != (dp, dd):
            raise QueryError("a table can only be renamed within its dataset")
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            con.execute(f"DROP TABLE IF EXISTS {_quoted(dp, dd, dt)}")
            con.execute(f"ALTER TABLE {_quoted(sp, sd, st)} RENAME TO \"{dt}\"")
            con.execute("COMMIT")
        return f"{dp}.{dd}.{dt}"

    def ensure_sample_data(self) -> list[str]:
        """Load the sample tables if they are not there yet; returns the tables it created."""
        existing = set(self.tables())
        if {PENGUINS_TABLE, TAXI_TABLE, TAXI_SAMPLE_VIEW} <= existing:  # no CSV to find: that imports pandas (0.3 s)
            return []
        penguins_csv = resources.files("palmerpenguins") / "data" / "penguins-raw.csv"
        taxi_csv = resources.files("kfkit") / "data" / "chicago_taxi_sample.csv"
        penguin_select = ", ".join(f"CAST({src} AS {typ}) AS {name}"
                                   for name, (src, typ) in _PENGUIN_COLUMNS.items())
        taxi_select = ", ".join(f"CAST({src or 'NULL'} AS {typ}) AS {name}"
                                for name, (src, typ) in _TAXI_COLUMNS.items())
        sources = {
            PENGUINS_TABLE: (f"SELECT {penguin_select} FROM read_csv(?, header=true, nullstr='NA')",
                             str(penguins_csv)),
            TAXI_TABLE: (f"SELECT {taxi_select} FROM read_csv(?, header=true)", str(taxi_csv)),
        }
        created = []
        with self.connect() as con:
            for name, (select, csv) in sources.items():
                if name in existing:
                    continue
                project, dataset, table = split_table_name(name)
                schema = bqsql.local_schema_name(project, dataset)
                con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                con.execute(f"CREATE TABLE {_quoted(project, dataset, table)} AS {select}", [csv])
                created.append(name)
            if TAXI_SAMPLE_VIEW not in existing:
                project, dataset, table = split_table_name(TAXI_SAMPLE_VIEW)
                con.execute(f'CREATE SCHEMA IF NOT EXISTS "{bqsql.local_schema_name(project, dataset)}"')
                con.execute(f"CREATE VIEW {_quoted(project, dataset, table)} AS {_TAXI_SAMPLE_SELECT} "
                            f"FROM {_quoted(*split_table_name(TAXI_TABLE))}")
                created.append(TAXI_SAMPLE_VIEW)
        return created

    # ---- queries ----------------------------------------------------------------------------
    def _prepare(self, query: str, con, params: dict[str, Any] | None = None) -> str:
        """DuckDB SQL for a BigQuery query, its result columns cast to BigQuery's types."""
        return with_bigquery_types(con, self._transpile(query, con), params, query)

    def _transpile(self, query: str, con: duckdb.DuckDBPyConnection | None = None) -> str:
        tree = bqsql.parse(query)
        known = set(self.tables(con))
        for project, dataset, table in bqsql.table_references(tree, self.project):
            full = f"{project}.{dataset}.{table}"
            if full not in known:
                hint = ", ".join(sorted(known)) or "none"
                raise QueryError(
                    f"table `{full}` not found in the local warehouse {str(self.path)!r}; "
                    f"tables there: {hint}. Load data with `kfkit data load` or `kfkit data synth`.")
        return bqsql.to_duckdb(query, self.project)

    def describe(self, query: str, params: dict[str, Any] | None = None) -> pa.Schema:
        """The result schema of a query (BigQuery's types, as Arrow), without running it."""
        with self.connect() as con:
            duck_sql = self._prepare(query, con, params)
            cursor = execute(con, f"SELECT * FROM ({duck_sql}) AS _q LIMIT 0", params, query)
            return cursor.to_arrow_table().schema

    def query_batches(self, query: str, params: dict[str, Any] | None = None,
                      batch_rows: int = 1_048_576) -> Iterator[pa.RecordBatch]:
        """Run a BigQuery query and stream the result as Arrow record batches."""
        con = self.connect()
        try:
            duck_sql = self._prepare(query, con, params)
            reader = execute(con, duck_sql, params, query).to_arrow_reader(batch_rows)
            try:
                for batch in reader:
                    yield batch
            except duckdb.Error as exc:  # an error while running (a BigQuery error() of a macro, an overflow)
                raise QueryError(explain_error(exc, query)) from exc
        finally:
            con.close()


def execute(con, duck_sql: str, params: dict[str, Any] | None, query: str = ""):
    """Run DuckDB SQL; DuckDB's errors become QueryErrors in BigQuery's terms (explain_error)."""
    try:
        return con.sql(duck_sql, params=params or None)
    except (duckdb.CatalogException, duckdb.BinderException, duckdb.ParserException,
            duckdb.ConversionException, duckdb.InvalidInputException, duckdb.OutOfRangeException) as exc:
        raise QueryError(explain_error(exc, query)) from exc


def with_bigquery_types(con, duck_sql: str, params: dict[str, Any] | None = None, query: str = "") -> str:
    """`duck_sql` with every result column cast to its BigQuery type (kfkit.warehouse.result_types), by a LIMIT 0 probe."""
    probe = execute(con, f"SELECT * FROM ({duck_sql}) AS _q LIMIT 0", params, query)
    select = result_types.projection([(name, str(kind)) for name, kind in zip(probe.columns, probe.types)])
    return duck_sql if select is None else f"SELECT {select} FROM ({duck_sql}) AS _q"


def _line_naming(query: str, name: str) -> str:
    line = line_of(query, name)
    return f"line {line}: " if line else ""


# DuckDB's name for a function the query spells the BigQuery way
_BIGQUERY_NAMES = {**bqsql.BIGQUERY_NAMES, "STR_SPLIT": "SPLIT"}


# DuckDB's type names as BigQuery's
_TYPE_NAMES = (("DECIMAL(38,9)", "NUMERIC"), ("DECIMAL(38, 9)", "NUMERIC"), ("DOUBLE", "FLOAT64"), ("BIGINT", "INT64"),
               ("INTEGER", "INT64"), ("VARCHAR", "STRING"), ("BOOLEAN", "BOOL"))


def _first_named(query: str, names: tuple[str, ...], default: str | None = None) -> str:
    """Of the BigQuery constructs `names` one error may come from, the first the query names (else `default`,
    or the first)."""
    return next((name for name in names if line_of(query, name)), default or names[0])


def explain_error(exc: Exception, query: str) -> str:
    """DuckDB's error in BigQuery's terms: the function or column by name, and its line in the query."""
    message = re.sub(r"\s+", " ", str(exc)).strip()
    message = re.sub(r"^(Catalog|Binder|Parser|Conversion|Invalid Input|Out of Range) Error: ", "", message)
    for duck, bigquery in _TYPE_NAMES:
        message = message.replace(duck, bigquery)
    if "Overflow in HUGEINT addition" in message:
        # DuckDB sums a DECIMAL(38, 9) in a 128-bit integer of billionths, which overflows past about 1.7e29;
        # BigQuery's SUM of NUMERIC fails only where the final sum is outside NUMERIC's range (aggregate_functions#sum)
        name = _first_named(query, ("SUM", "AVG"))
        return (f"{_line_naming(query, name)}{name} of NUMERIC: the running total passed what the local warehouse "
                "can hold (about 1.7e29) before the end of the group, where BigQuery answers if the final sum is "
                "within NUMERIC's range; CAST the values AS FLOAT64, or run it on BigQuery")
    if "Overflow in SUM of DECIMAL" in message:
        name = _first_named(query, ("SUM", "AVG"))
        return (f"{_line_naming(query, name)}{name} of NUMERIC: numeric overflow: the sum is outside NUMERIC's range "
                "(-99999999999999999999999999999.999999999 to 99999999999999999999999999999.999999999)")
    overflow = re.search(r"Overflow in (addition|subtraction|multiplication) of DECIMAL", message)
    if overflow:  # operators#arithmetic_operators: NUMERIC arithmetic beyond NUMERIC's range is an error
        return f"numeric overflow: NUMERIC {overflow.group(1)} outside NUMERIC's range"
    if message.startswith("division by zero"):  # operators#arithmetic_operators, as BigQuery words it
        return f"{_line_naming(query, '/')}{message}"
    integer = re.search(r"Overflow in (addition|subtraction|multiplication|negation) of (?:INT64|numeric value)"
                        r"(?: \((.*)\))?", message)
    if integer:  # operators#arithmetic_operators: INT64 arithmetic beyond INT64's range is an error
        operator = {"addition": "+", "subtraction": "-", "multiplication": "*", "negation": "-"}[integer.group(1)]
        operands = f": {integer.group(2)}" if integer.group(2) else ""
        return f"{_line_naming(query, operator)}int64 overflow in the {operator} operator{operands}"
    if "INT128" in message and "out of range for the destination type INT64" in message:
        # DuckDB sums INT64 in 128 bits and fails casting the result; BigQuery's SUM of INT64 is an overflow error
        name = _first_named(query, ("SUM", "AVG"))
        return f"{_line_naming(query, name)}{name}: int64 overflow: the sum of INT64 values is outside INT64's range"
    if "could not convert blob to UTF8 string" in message:  # conversion_functions#cast_as_string
        return (f"{_line_naming(query, 'CAST')}CAST: the BYTES value is not valid UTF-8, so it has no STRING "
                "(SAFE_CONVERT_BYTES_TO_STRING replaces the invalid bytes)")
    bad_date = re.search(r"Date out of range: (\S+)", message)
    if bad_date:  # date_functions#parse_date: a date that does not exist is an error
        name = _first_named(query, ("PARSE_DATE", "PARSE_DATETIME", "PARSE_TIMESTAMP"))
        return f"{_line_naming(query, name)}{name}: the text gives no valid date ({bad_date.group(1)})"
    zone = re.search(r"Unknown TimeZone '([^']*)'", message)
    if zone:
        return (f"{_line_naming(query, 'TIME ZONE')}time zone {zone.group(1)!r} is not known to the local warehouse: "
                "it takes tz database names (America/Los_Angeles), UTC, and offsets in TIMESTAMP strings")
    python = re.search(r"Python exception occurred while executing the UDF: (?:ValueError|OverflowError): (.*)",
                       message)
    if python:  # a BigQuery error a Python function of the translation raises (json_functions, numeric)
        return python.group(1)
    raised = re.search(r"Could not convert string 'kfkit-error: (.*?)' to INT32", message)
    if raised:  # a BigQuery error the translation raises where a row reaches it (semantics: bq_fail)
        return raised.group(1)
    function = re.search(r"[Ff]unction with name \"?([A-Za-z_][\w.]*)\"? (does not exist|is not in the catalog)",
                         message)
    if function:
        name = function.group(1)
        return (f"{_line_naming(query, name)}function {name.upper()} is not known to the local warehouse "
                "(not a BigQuery function, or one it does not support: see docs/sql.md for the supported "
                "surface and what to write instead)")
    column = re.search(r'Referenced column "?([\w]+)"? not found', message)
    if column:
        return f"{_line_naming(query, column.group(1))}unrecognized name: {column.group(1)} ({message})"
    ambiguous = re.search(r'[Aa]mbiguous reference to column name "?([\w]+)"?', message)
    if ambiguous:
        return f"{_line_naming(query, ambiguous.group(1))}column name {ambiguous.group(1)} is ambiguous ({message})"
    no_match = re.search(r"No function matches the given name and argument types '([^(']+)\(([^)]*)\)'", message)
    if no_match:
        name = _bigquery_function(no_match.group(1), query)
        if name in _BYTES_REFUSED and "BLOB" in no_match.group(2):
            # string_functions#strpos, #trim: BigQuery takes BYTES too, DuckDB's functions text only
            return (f"{_line_naming(query, name)}{name} of BYTES is not supported by the local warehouse; CAST the "
                    "values AS STRING (if they are UTF-8), or run it on BigQuery")
        return (f"{_line_naming(query, name)}no matching signature for function "
                f"{name} for argument types: {_bigquery_types(no_match.group(2))}")
    timestamp = re.search(r'invalid timestamp field format: "([^"]*)"', message)
    if timestamp:  # conversion_functions#cast_as_timestamp: BigQuery reads it (one-digit parts, offset hour)
        name = _first_named(query, ("SAFE_CAST", "CAST", "TIMESTAMP"), "CAST")
        return (f"{_line_naming(query, name)}{name}: the local warehouse cannot read the timestamp string "
                f"{timestamp.group(1)!r} as BigQuery does (outside a literal, DuckDB reads two-digit parts and offsets "
                "only); write it zero-padded, or run it on BigQuery")
    if _DUCKDB_WORDING.search(message):
        return _unexplained(message, query)
    own = re.match(r"(?:line \d+: )?([A-Z][A-Z0-9_]*)\b", message)
    if own and message.startswith("line "):
        return message
    if own and line_of(query, own.group(1)):  # an error the translation's own macros raise, naming the function
        return f"{_line_naming(query, own.group(1))}{message}"
    for pattern, names in _OWN_CONSTRUCTS:  # the translation's macros' BigQuery errors that name no function
        if re.match(pattern, message):
            name = _first_named(query, names)
            return f"{_line_naming(query, name)}{name}: {message}"
    return f"the local warehouse rejected the query: {message}"


_OWN_CONSTRUCTS = ((r"Bad \w+ value", ("CAST", "SAFE_CAST")), (r"Array index", ("OFFSET", "ORDINAL")),
                   (r"floating point overflow", ("+", "-", "*", "/")))

# DuckDB's name for a function that runs a BigQuery one, and the BigQuery functions it may stand for (the first
# the query names is the one meant)
_DUCKDB_FUNCTIONS = {
    "SUBSTRING": ("SUBSTR", "SUBSTRING"), "INSTR": ("STRPOS", "INSTR"), "STRPOS": ("STRPOS", "INSTR"),
    "STRFTIME": ("FORMAT_TIME", "FORMAT_DATE", "FORMAT_DATETIME", "FORMAT_TIMESTAMP"),
    "STRPTIME": ("PARSE_TIME", "PARSE_DATE", "PARSE_DATETIME", "PARSE_TIMESTAMP"), "STR_SPLIT": ("SPLIT",),
    "STRING_SPLIT": ("SPLIT", "REVERSE"), "DATE_PART": ("EXTRACT",),
    "TIME_BUCKET": ("DATE_TRUNC", "DATETIME_TRUNC", "TIMESTAMP_TRUNC"), "REGEXP_EXTRACT_ALL": ("REGEXP_EXTRACT_ALL",
                                                                                               "REGEXP_EXTRACT"),
    "GENERATE_SERIES": ("GENERATE_DATE_ARRAY", "GENERATE_TIMESTAMP_ARRAY", "GENERATE_ARRAY"), "~~": ("LIKE",),
    "LIST_VALUE": ("ARRAY_CONCAT", "ARRAY"), "ARRAY_SLICE": ("ARRAY_REVERSE",), "SUM": ("SUM",), "AVG": ("AVG",),
    "/": ("SAFE_DIVIDE", "IEEE_DIVIDE", "DIV", "/"), "-": ("OFFSET", "ORDINAL", "-"), "+": ("+",),
}
_BYTES_REFUSED = ("STRPOS", "INSTR", "TRIM", "LTRIM", "RTRIM")
# what marks a message as DuckDB's own (the translation's macros raise BigQuery's wording)
_DUCKDB_WORDING = re.compile(
    r"LINE \d+:|Candidate functions|_LITERAL\b|Could not convert string|Could not choose a best candidate|"
    r"Unimplemented type for cast|Cannot deduce template type|syntax error at or near|Could not find key|"
    r"Cannot extract field|can only be applied to|can only operate on|field value out of range|\bINT32\b|\bBLOB\b|"
    r"HUGEINT|INT128|Overflow on abs")


def _bigquery_function(duck_name: str, query: str) -> str:
    upper = duck_name.upper()
    if upper.startswith("BQ_"):  # one of the translation's macros, named for the BigQuery function it runs
        upper = upper[3:]
    candidates = _DUCKDB_FUNCTIONS.get(upper, (_BIGQUERY_NAMES.get(upper, upper),))
    return _first_named(query, candidates, candidates[-1])


def _bigquery_types(text: str) -> str:
    """DuckDB's type names in `text` as BigQuery's (a literal's type is its type)."""
    text = re.sub(r"TIMESTAMP WITH TIME ZONE|TIMESTAMPTZ", "\0", text)
    text = re.sub(r"\bTIMESTAMP\b", "DATETIME", text)
    for duck, bigquery in (("\0", "TIMESTAMP"), ("BLOB", "BYTES"), ("HUGEINT", "INT64"), ("INT128", "INT64"),
                           ("INT32", "INT64"), *_TYPE_NAMES):
        text = text.replace(duck, bigquery)
    return re.sub(r"\b([A-Z0-9]+)_LITERAL\b", r"\1", text)


def _unexplained(message: str, query: str) -> str:
    """A DuckDB error no rule above explains: the BigQuery construct it came from and its line, then DuckDB's
    reason in BigQuery's type names, without DuckDB's SQL (its LINE context) or its candidate signatures."""
    reason, _, context = message.partition(" LINE ")
    reason = re.sub(r"\s*(You might need|In order to select one|Candidate functions|Candidate Entries).*$", "",
                    reason)
    named = re.search(r"function call \\?\"([^\s(\"]+)\(", reason) or re.search(r"'([^\s(']+)\(", reason)
    reason = re.sub(r" in function: '[^']*'", "", reason).replace("[]'", " ARRAY'")
    construct = _bigquery_function(named.group(1), query) if named else None
    if construct is None:
        # the translation writes the construct's name and line into its macros' calls ('line 2: CHR'); else the
        # first function call of DuckDB's SQL around the error that the query names
        where = re.search(r"'(line \d+: [A-Z_]+)'", context)
        if where:
            return f"{where.group(1)}: {_bigquery_types(reason)}"
        calls = (_bigquery_function(name, query) for name in re.findall(r"([A-Za-z_]\w*)\(", context))
        construct = next((name for name in calls if line_of(query, name) and name not in ("CAST", "SELECT")), None)
    if construct is None and "cast" in reason.lower():
        construct = next((name for name in ("CAST", "SAFE_CAST") if line_of(query, name)), None)
    literal = re.search(r"Could not convert string '([^']*)' to", reason)
    if literal:  # conversion_rules#literal_coercion: a STRING literal is no number
        reason = (f"No matching signature: the STRING '{literal.group(1)}' is where a number goes, and BigQuery "
                  "does not convert a STRING to a number; write the value without quotes or CAST it")
        construct = construct or next((line_of(query, f"'{literal.group(1)}'") and f"'{literal.group(1)}'",), None)
    prefix = f"{_line_naming(query, construct)}{construct}: " if construct else ""
    return (f"{prefix}the local warehouse could not run this as BigQuery would: {_bigquery_types(reason).rstrip('. ')}"
            + ("" if construct else " (the construct could not be told from DuckDB's error; see docs/sql.md)"))


def load_file(warehouse: LocalWarehouse, table: str, path: str | Path) -> str:
    """Load a CSV or Parquet file into the warehouse as `table`."""
    path = Path(path)
    if not path.exists():
        raise QueryError(f"file {str(path)!r} does not exist")
    reader = "read_parquet" if path.suffix in (".parquet", ".pq") else "read_csv"
    with duckdb.connect() as con:
        data = con.sql(f"SELECT * FROM {reader}(?)", params=[str(path)]).to_arrow_table()
    return warehouse.write_table(table, data)
