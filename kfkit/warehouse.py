"""The embedded warehouse: a DuckDB file under the local root that answers BigQuery SQL.

It ships with the public tables the demos read, under their BigQuery names:
`bigquery-public-data.ml_datasets.penguins` (Palmer penguins, BigQuery's columns and values) and
`kfkit-samples.chicago_taxi.trips` (the Chicago taxi sample, see kfkit/data).
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import duckdb
import pyarrow as pa

from kfkit import sql as bqsql
from kfkit.config import local_root
from kfkit.errors import QueryError

PENGUINS_TABLE = "bigquery-public-data.ml_datasets.penguins"
TAXI_TABLE = "kfkit-samples.chicago_taxi.trips"
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
        try:
            con = duckdb.connect(str(self.path), read_only=read_only and self.path.exists())
        except duckdb.IOException as exc:
            raise QueryError(f"cannot open the local warehouse {str(self.path)!r}: {exc}") from exc
        bqsql.register_functions(con)
        return con

    # ---- tables -----------------------------------------------------------------------------
    def tables(self) -> list[str]:
        with self.connect() as con:
            rows = con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() ORDER BY 1, 2").fetchall()
        return [f"{schema}.{table}" for schema, table in rows]

    def write_table(self, name: str, data: pa.Table | pa.RecordBatchReader, replace: bool = True) -> str:
        """Create (or replace) a warehouse table from Arrow data, streamed when given a reader."""
        project, dataset, table = split_table_name(name, self.project)
        target = _quoted(project, dataset, table)
        schema = bqsql.local_schema_name(project, dataset).replace('"', '""')
        with self.connect() as con:
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            con.register("_kfkit_incoming", data)
            verb = "CREATE OR REPLACE TABLE" if replace else "CREATE TABLE"
            con.execute(f"{verb} {target} AS SELECT * FROM _kfkit_incoming")
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
        penguins_csv = resources.files("palmerpenguins") / "data" / "penguins-raw.csv"
        taxi_csv = resources.files("kfkit") / "data" / "chicago_taxi_sample.csv"
        penguin_select = ", ".join(f"CAST({src} AS {typ}) AS {name}"
                                   for name, (src, typ) in _PENGUIN_COLUMNS.items())
        sources = {
            PENGUINS_TABLE: (f"SELECT {penguin_select} FROM read_csv(?, header=true, nullstr='NA')",
                             str(penguins_csv)),
            TAXI_TABLE: ("SELECT * FROM read_csv(?, header=true)", str(taxi_csv)),
        }
        existing = set(self.tables())
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
        return created

    # ---- queries ----------------------------------------------------------------------------
    def _prepare(self, query: str) -> str:
        tree = bqsql.parse(query)
        known = set(self.tables())
        for project, dataset, table in bqsql.table_references(tree, self.project):
            full = f"{project}.{dataset}.{table}"
            if full not in known:
                hint = ", ".join(sorted(known)) or "none"
                raise QueryError(
                    f"table `{full}` not found in the local warehouse {str(self.path)!r}; "
                    f"tables there: {hint}. Load data with `kfkit data load` or `kfkit data synth`.")
        return bqsql.to_duckdb(query, self.project)

    def _execute(self, con, duck_sql: str, params: dict[str, Any] | None):
        try:
            return con.sql(duck_sql, params=params or None)
        except (duckdb.CatalogException, duckdb.BinderException, duckdb.ParserException,
                duckdb.ConversionException, duckdb.InvalidInputException) as exc:
            message = re.sub(r"\s+", " ", str(exc)).strip()
            raise QueryError(f"the local warehouse rejected the query: {message}") from exc

    def describe(self, query: str, params: dict[str, Any] | None = None) -> pa.Schema:
        """The result schema of a query, without running it."""
        duck_sql = self._prepare(query)
        with self.connect() as con:
            cursor = self._execute(con, f"SELECT * FROM ({duck_sql}) AS _q LIMIT 0", params)
            return cursor.to_arrow_table().schema

    def query_batches(self, query: str, params: dict[str, Any] | None = None,
                      batch_rows: int = 262_144) -> Iterator[pa.RecordBatch]:
        """Run a BigQuery query and stream the result as Arrow record batches."""
        duck_sql = self._prepare(query)
        con = self.connect()
        try:
            reader = self._execute(con, duck_sql, params).to_arrow_reader(batch_rows)
            for batch in reader:
                yield batch
        finally:
            con.close()


def load_file(warehouse: LocalWarehouse, table: str, path: str | Path) -> str:
    """Load a CSV or Parquet file into the warehouse as `table`."""
    path = Path(path)
    if not path.exists():
        raise QueryError(f"file {str(path)!r} does not exist")
    reader = "read_parquet" if path.suffix in (".parquet", ".pq") else "read_csv"
    with duckdb.connect() as con:
        data = con.sql(f"SELECT * FROM {reader}(?)", params=[str(path)]).to_arrow_table()
    return warehouse.write_table(table, data)
