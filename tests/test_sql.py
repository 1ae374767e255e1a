import re

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from kfkit.components.ingest.ingest import BUCKETS, buckets
from kfkit.warehouse import sql
from kfkit.errors import QueryError

# From BigQuery's documentation of FARM_FINGERPRINT (hash functions page) and a published example.
BIGQUERY_DOC_VALUES = {
    "1footrue": -1541654101129638711,
    "2applefalse": 2794438866806483259,
    "3true": -4880158226897771312,
    "alphabet": -2427165924636348523,
}


def test_fingerprint64_matches_bigquery_documented_values():
    assert {s: sql.fingerprint64(s) for s in BIGQUERY_DOC_VALUES} == BIGQUERY_DOC_VALUES


def test_duckdb_farm_fingerprint_reproduces_bigquery_documentation_example():
    con = duckdb.connect()
    sql.register_functions(con)
    bigquery_sql = """
        WITH example AS (
          SELECT 1 AS x, "foo" AS y, true AS z UNION ALL
          SELECT 2 AS x, "apple" AS y, false AS z UNION ALL
          SELECT 3 AS x, "" AS y, true AS z)
        SELECT FARM_FINGERPRINT(CONCAT(CAST(x AS STRING), y, CAST(z AS STRING))) AS row_fingerprint
        FROM example ORDER BY x"""

    rows = con.execute(sql.to_duckdb(bigquery_sql)).fetchall()

    assert [r[0] for r in rows] == [-1541654101129638711, 2794438866806483259, -4880158226897771312]


def test_duckdb_farm_fingerprint_of_null_is_null():
    con = duckdb.connect()
    sql.register_functions(con)
    assert con.execute("SELECT farm_fingerprint(NULL::VARCHAR)").fetchone()[0] is None


def test_transpile_maps_backticked_project_dataset_table_to_local_schema():
    out = sql.to_duckdb("SELECT a FROM `my-proj.sales.orders` JOIN sales.items USING (id)", "dflt")
    assert '"my-proj.sales"."orders"' in out
    assert '"dflt.sales".items' in out


def test_safe_cast_and_query_parameters_run_on_the_local_warehouse(warehouse):
    query = ("SELECT SAFE_CAST(island AS INT64) AS bad, SAFE_CAST(body_mass_g AS INT64) AS mass "
             "FROM `bigquery-public-data.ml_datasets.penguins` WHERE island = @island AND body_mass_g > @min_mass")

    table = pa.Table.from_batches(list(warehouse.query_batches(query, {"island": "Dream", "min_mass": 4000})))

    assert table.num_rows > 0
    assert table.column("bad").null_count == table.num_rows  # SAFE_CAST gives NULL, not an error
    assert min(table.column("mass").to_pylist()) > 4000


def test_split_buckets_equal_the_bigquery_sql_expression(warehouse):
    ids = pa.array(np.arange(0, 5000, 7, dtype=np.int64))
    batch = pa.RecordBatch.from_arrays([ids], names=["id"])
    con = duckdb.connect()
    sql.register_functions(con)
    con.register("t", pa.Table.from_batches([batch]))
    expected = con.execute(sql.to_duckdb(
        f"SELECT ABS(MOD(FARM_FINGERPRINT(CAST(id AS STRING)), {BUCKETS})) FROM t ORDER BY id")).fetchall()

    assert buckets(batch, ["id"]).tolist() == [r[0] for r in expected]


@pytest.mark.parametrize("expression", ["RAND()", "GENERATE_UUID()", "CURRENT_TIMESTAMP()", "ROW_NUMBER() OVER ()"])
def test_nondeterministic_key_expressions_are_found_through_ctes(expression):
    query = f"WITH t AS (SELECT *, {expression} AS k FROM d.x) SELECT a, k FROM t"
    assert list(sql.nondeterministic_columns(query, ["k"])) == ["k"]


def test_ordered_row_number_is_deterministic():
    assert sql.nondeterministic_columns("SELECT ROW_NUMBER() OVER (ORDER BY id) AS k FROM d.x", ["k"]) == {}


def test_syntax_error_names_line_and_column():
    with pytest.raises(QueryError, match=r"syntax error at line 1, column \d+"):
        sql.parse("SELECT a FROM b WHERE")


def test_statements_other_than_select_are_refused():
    with pytest.raises(QueryError, match="expected a SELECT query"):
        sql.parse("DROP TABLE d.x")


def test_a_modifier_the_translation_would_drop_is_refused_naming_it_and_its_line():
    # sqlglot translates this with a warning and without RESPECT NULLS: a different answer
    query = "SELECT x,\n  PERCENTILE_CONT(x, 0.5 RESPECT NULLS) OVER () AS p FROM UNNEST([1, NULL]) AS x"

    with pytest.raises(QueryError, match=r"^line 2: RESPECT: the local warehouse cannot answer this as BigQuery "
                                         r"would \(RESPECT NULLS is not supported"):
        sql.to_duckdb(query)

REFUSAL_CALLS = {
    "BIGNUMERIC": "CAST(1 AS BIGNUMERIC)", "HLL_COUNT": "HLL_COUNT.INIT(x)",
    "ML.PREDICT": "ML.PREDICT(MODEL `d.m`, (SELECT 1))", "KEYS.NEW_KEYSET": "KEYS.NEW_KEYSET('AEAD_AES_GCM_256')",
    "AEAD.ENCRYPT": "AEAD.ENCRYPT(x, 'a', 'b')", "RANGE_BUCKET": "RANGE_BUCKET(x, [1, 2])",
    "GENERATE_TIMESTAMP_ARRAY": "GENERATE_TIMESTAMP_ARRAY(TIMESTAMP '2020-01-01', TIMESTAMP '2020-01-02', INTERVAL 1 HOUR)",
    "APPROX_TOP_SUM": "APPROX_TOP_SUM(x, x, 2)",
}


@pytest.mark.parametrize("name", sorted(__import__("kfkit.warehouse.semantics", fromlist=["x"]).REFUSED_FUNCTIONS))
def test_every_function_on_the_refusal_list_is_refused_by_name(name):
    call = REFUSAL_CALLS.get(name, f"{name}(x)")

    with pytest.raises(QueryError, match=rf"line 2: {re.escape(name)} is not supported by the local warehouse"):
        sql.to_duckdb(f"SELECT\n  {call} AS v FROM UNNEST([1]) AS x")


def test_nested_least_and_greatest_translate_to_sql_that_grows_linearly_not_exponentially():
    # each LEAST names its arguments 3 times (NaN test, GREATEST, LEAST) and DuckDB's GREATEST twice:
    # copied, a nesting of 4 would be 6^4 copies of the innermost argument
    inner = "FLOOR(x / 2)"
    nested = inner
    for depth in range(4):
        nested = f"LEAST(GREATEST({nested}, {depth}), 19)"

    text = sql.to_duckdb(f"SELECT {nested} AS b FROM t")

    assert text.count("BQ_DIVIDE_ROWS(") == 1
    assert len(text) < 12_000


def test_least_and_greatest_over_computed_values_answer_as_bigquery(warehouse):
    # mathematical_functions#least / #greatest: NULL if any input is NULL; NaN if any input is NaN
    query = ("SELECT x, LEAST(GREATEST(FLOOR(x / 2), 0), 19) AS b, GREATEST(ABS(x), 3) AS g FROM UNNEST("
             "[1.0, 9.0, 100.0, CAST('nan' AS FLOAT64), NULL, -5.0]) AS x WITH OFFSET AS o ORDER BY o")

    rows = [r for batch in warehouse.query_batches(query) for r in batch.to_pylist()]

    assert [r["b"] for r in rows][:3] == [0.0, 4.0, 19.0] and rows[5]["b"] == 0.0
    assert np.isnan(rows[3]["b"]) and rows[4]["b"] is None
    assert [r["g"] for r in rows][:3] == [3.0, 9.0, 100.0] and rows[5]["g"] == 5.0
    assert np.isnan(rows[3]["g"]) and rows[4]["g"] is None


def test_a_bignumeric_column_is_refused_when_loaded_naming_bignumeric_and_the_column(tmp_path):
    from decimal import Decimal

    from kfkit.warehouse.local import LocalWarehouse

    warehouse = LocalWarehouse(tmp_path)
    nested = pa.table({"id": [1], "s": pa.array([{"amount": Decimal("1.5")}],
                                                pa.struct([("amount", pa.decimal256(76, 38))]))})

    with pytest.raises(QueryError, match=r"column s\.amount is a BIGNUMERIC") as refused:
        warehouse.write_table("ds.payments", nested)

    assert "decimal256" in str(refused.value) and "Unsupported Internal Arrow Type" not in str(refused.value)
    assert "ds.payments" not in [t.split(".", 1)[-1] for t in warehouse.tables()]


# DuckDB's own wording of errors BigQuery raises, each as the local warehouse words it: the BigQuery function or
# operator, and the query line it is on (never DuckDB's type names: INT128, HUGEINT)
ERRORS_IN_BIGQUERY_TERMS = {
    "(SELECT x + 1 FROM UNNEST([9223372036854775807]) AS x)": r"^line 2: int64 overflow in the \+ operator",
    "(SELECT x * 2 FROM UNNEST([9223372036854775807]) AS x)": r"^line 2: int64 overflow in the \* operator",
    "(SELECT -x - 2 FROM UNNEST([9223372036854775807]) AS x)": r"^line 2: int64 overflow in the - operator",
    "1 / 0": r"^line 2: division by zero: 1 / 0",
    "(SELECT SUM(x) FROM UNNEST([9223372036854775807, 1]) AS x)": r"^line 2: SUM: int64 overflow",
    "CAST(b'\\xff' AS STRING)": r"^line 2: CAST: the BYTES value is not valid UTF-8",
    "PARSE_DATE('%Y-%m-%d', '2008-02-30')": r"^line 2: PARSE_DATE: the text gives no valid date",
    "TIMESTAMP '2008-12-25 15:30:00+00' AT TIME ZONE '+05:30'": r"^line 2: time zone '\+05:30' is not known",
    "(SELECT STRING_AGG(x LIMIT 1) FROM (SELECT FROM_BASE64('eA==') AS x))": r"^line 2: STRING_AGG: STRING_AGG of a "
                                                                            r"BYTES value",
    "SUBSTR('abc', 1.5)": r"^line 2: SUBSTR: No matching signature for function SUBSTR for argument types: "
                          r"STRING, FLOAT64",
    "SUBSTR('abc', '1')": r"^line 2: SUBSTR: No matching signature",
    "LEFT('abc', 1.5)": r"^line 2: LEFT: No matching signature",
    "STRPOS(b'abc', b'b')": r"^line 2: STRPOS of BYTES is not supported",
    "LTRIM(b'xa', b'x')": r"^line 2: LTRIM of BYTES is not supported",
    "STRPOS('abc', 1)": r"^line 2: no matching signature for function STRPOS for argument types: STRING, INT64",
    "FORMAT_TIME('%Y', TIME '01:02:03')": r"^line 2: FORMAT_TIME: the format",
    "DATETIME(TIMESTAMP '2020-01-01 00:00:00+00', '+05:30')": r"^line 2: DATETIME: the time zone '\+05:30' is an "
                                                              r"offset",
    "TIMESTAMP('2020-01-01 00:00:00', '-08')": r"^line 2: TIMESTAMP: the time zone '-08' is an offset",
    "FORMAT('%p', JSON '[1]')": r"^FORMAT: %p \(JSON as printable text\) is not supported",
    "(SELECT SUM('a') FROM UNNEST([1]))": r"^line 2: SUM: No matching signature for aggregate function SUM for "
                                          r"argument types: STRING",
    "(SELECT STRING_AGG(x) FROM UNNEST([1]) AS x)": r"^line 2: STRING_AGG: No matching signature for aggregate "
                                                    r"function STRING_AGG for argument types: INT64",
    "ARRAY_AGG(1, 2)": r"^line 2: ARRAY_AGG: No matching signature for aggregate function ARRAY_AGG for argument "
                       r"types: INT64, INT64",
    "TO_HEX('a')": r"^line 2: TO_HEX: No matching signature for function TO_HEX for argument types: STRING",
    "JSON_VALUE(1)": r"^line 2: JSON_VALUE: No matching signature for function JSON_VALUE for argument types: INT64",
    "IF(TRUE, 1, 'a')": r"^line 2: IF: No matching signature for function IF for argument types: INT64, STRING",
    "SAFE_CAST(TRUE AS DATE)": r"^line 2: SAFE_CAST: Invalid cast from BOOL to DATE",
    "DATE_ADD(DATE '2020-01-01', INTERVAL '1' DAY)": r"^line 2: DATE_ADD: Interval value must be coercible to INT64",
    "GENERATE_ARRAY(0.5, 2.5)": r"^line 2: GENERATE_ARRAY: GENERATE_ARRAY over FLOAT64 is not supported",
    "(SELECT CAST(s AS TIMESTAMP) FROM UNNEST(['2020-1-2 3:4:5+1']) AS s)": r"^line 2: CAST: the local warehouse "
                                                                           r"cannot read the timestamp string",
}


@pytest.mark.parametrize("expression", sorted(ERRORS_IN_BIGQUERY_TERMS))
def test_errors_name_the_bigquery_construct_and_its_line_not_duckdbs_terms(expression):
    from tests.sql_conformance.conformance import connection, run

    with pytest.raises(QueryError, match=ERRORS_IN_BIGQUERY_TERMS[expression]) as raised:
        run(connection(), f"SELECT\n  {expression} AS v")

    assert not re.search(r"INT128|HUGEINT|DECIMAL\(38|LISTAGG|decode|rejected the query|INSTR|SUBSTRING|STRFTIME|"
                         r"STR_SPLIT|BLOB|_LITERAL|VARCHAR|Candidate|LINE \d", str(raised.value))


def test_no_error_of_the_sweep_carries_duckdbs_wording():
    """Every error and refused conformance case, and wrong argument types and counts for common functions
    (tests/sql_conformance/error_sweep.py), gives a message in BigQuery's terms."""
    from tests.sql_conformance.error_sweep import sweep

    answered: list[str] = []
    _, _, found = sweep(answered=answered)

    assert found == []
    # each of the sweep's wrong queries is an error on BigQuery, so none may get an answer locally
    assert answered == []
