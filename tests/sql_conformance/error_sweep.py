"""Every error the local warehouse gives, grepped for DuckDB's own wording.

    python tests/sql_conformance/error_sweep.py [-v]

It runs the conformance suite's error and refused cases, and a list of deliberately wrong queries (wrong
argument types and counts for common functions), and counts the messages that carry a DuckDB term
(an exception class's prefix, a DuckDB type or function name) rather than BigQuery's.
"""

from __future__ import annotations

import re
import sys

from tests.sql_conformance.conformance import connection, evaluate, load_cases, Case

DUCKDB_TERMS = re.compile(
    r"Binder Error|Conversion Error|Catalog Error|Parser Error|Invalid Input Error|Not implemented Error|"
    r"Out of Range Error|HUGEINT|INT128|\bBLOB\b|VARCHAR|\bINTEGER\b|\bDOUBLE\b|\bBIGINT\b|strftime|STRFTIME|"
    r"\blist_|\bstruct_|_LITERAL\b|function SUBSTRING\b|STR_SPLIT|DECIMAL\(|"
    r"\bTIMESTAMP WITH TIME ZONE\b|TIMESTAMPTZ|rejected the query|Candidate functions|"
    r"Python exception|kfkit-error|LINE \d+:")

# wrong argument types and counts, each an error on BigQuery (No matching signature / wrong number of arguments).
# Not here, as BigQuery answers them (conformance cases): FORMAT_TIME('%H', TIME '01:02:03'), and DATE, TIMESTAMP
# and CAST of a column's '2020-1-2 3:4:5' (one-digit parts: ZetaSQL's ConvertStringToDate and friends read them)
WRONG = [
    "SUBSTR('abc', '1')", "SUBSTR('abc', 1.5)", "SUBSTR('abc', 1, 2.0)", "SUBSTR('abc')", "LEFT('abc', 1.5)",
    "RIGHT('abc', 1.5)", "LEFT('abc', '1')", "RIGHT('abc', '1')", "REPEAT('a', '2')", "REPEAT('a', 2.0)",
    "LPAD('a', '3')", "RPAD('a', '3')", "LPAD('a', 3.0)", "STRPOS('abc', 1)", "INSTR('abc', 'b', '1')",
    "INSTR('abc', 'b', 1, '1')", "ROUND(1.25, '1')", "ROUND(1.25, 1.0)", "GENERATE_ARRAY(1, '3')",
    "GENERATE_ARRAY('1', 3)", "LENGTH(1)", "UPPER(1)", "LOWER(1.5)", "CONCAT('a', 1)", "REPLACE('a', 1, 'b')",
    "SPLIT(1, ',')", "SPLIT('a,b', 1)", "STARTS_WITH('a', 1)", "ENDS_WITH(1, 'a')", "REVERSE(1)",
    "TRIM(1)", "LTRIM('a', 1)", "ABS('1')", "SQRT('4')", "POW('2', 2)", "MOD(5.5, 2)", "MOD('5', 2)",
    "SIGN('1')", "FLOOR('1.5')", "CEIL('1.5')", "LOG('10')", "EXP('1')", "DIV(5.0, 2)", "DIV('5', 2)",
    "DATE_ADD(DATE '2020-01-01', INTERVAL '1' DAY)", "DATE_ADD('2020-01-01', 1)", "DATE_DIFF(DATE '2020-01-01')",
    "DATE_TRUNC('2020-01-01', MONTH)", "EXTRACT(YEAR FROM 1)", "FORMAT_DATE('%Y', 1)", "PARSE_DATE('%Y', 2020)",
    "TIMESTAMP_ADD(TIMESTAMP '2020-01-01', 1)", "DATETIME(1)", "DATE(1.5)", "TIME(1)", "TIMESTAMP(1.5)",
    "UNIX_SECONDS(1)", "TIMESTAMP_SECONDS('1')", "TIMESTAMP_SECONDS(1.5)", "ARRAY_LENGTH(1)",
    "ARRAY_LENGTH('a')", "ARRAY_TO_STRING([1, 2], ',')", "ARRAY_CONCAT([1], ['a'])", "ARRAY_REVERSE(1)",
    "TO_JSON_STRING()", "JSON_VALUE(1)", "JSON_QUERY('{}', 1)", "JSON_EXTRACT_SCALAR(1, '$')",
    "REGEXP_CONTAINS('a', 1)", "REGEXP_EXTRACT(1, 'a')", "REGEXP_REPLACE('a', 'a')", "IF(1, 2, 3)",
    "IF(TRUE, 1, 'a')", "COALESCE(1, 'a')", "IFNULL(1, 'a')", "NULLIF(1, 'a')", "GREATEST(1, 'a')",
    "LEAST(1, 'a')", "CAST(1 AS DATE)", "CAST(DATE '2020-01-01' AS INT64)", "SAFE_CAST(TRUE AS DATE)",
    "FARM_FINGERPRINT(1)", "MD5(1)", "SHA256(1)", "TO_BASE64('a')", "FROM_BASE64(1)", "TO_HEX('a')",
    "FORMAT('%d', 'a')", "FORMAT('%s')", "FORMAT(1)",
    "FORMAT_TIME('%H', 1)", "CHAR_LENGTH(1)", "BYTE_LENGTH(1)", "ASCII(1)", "CHR('a')", "CODE_POINTS_TO_STRING(1)",
    "STRPOS(b'abc', b'b')", "TRIM(b'xaxx', b'x')", "LTRIM(b'xa', b'x')", "RTRIM(b'ax', b'x')",
    "DATETIME(TIMESTAMP '2020-01-01 00:00:00+00', '+05:30')", "TIMESTAMP(DATETIME '2020-01-01 00:00:00', '+05:30')",
    "TIMESTAMP('2020-01-01 00:00:00', '-08')", "FORMAT('%p', JSON '{\"a\": 1}')", "FORMAT('%P', JSON '[1]')",
    "ARRAY_AGG(1, 2)", "(SELECT SUM('a') FROM UNNEST([1]))", "(SELECT AVG('a') FROM UNNEST([1]))",
    "(SELECT MAX(x, 1) FROM UNNEST([1]) AS x)", "(SELECT COUNTIF(x) FROM UNNEST([1]) AS x)",
    "(SELECT STRING_AGG(x) FROM UNNEST([1]) AS x)", "(SELECT LOGICAL_AND(x) FROM UNNEST([1]) AS x)",
    "1 + 'a'", "'a' * 2", "DATE '2020-01-01' + 1", "NOT 1", "1 AND TRUE", "[1, 2][OFFSET('a')]",
    "STRUCT(1 AS a).b", "(SELECT x.a FROM UNNEST([1]) AS x)", "NO_SUCH_FUNCTION(1)", "CURRENT_DATE(1, 2, 3)",
    "LAST_DAY(1)", "ARRAY_FIRST(1)", "SAFE_DIVIDE('a', 1)", "IEEE_DIVIDE('1', 2)", "RAND(1)",
    "GENERATE_DATE_ARRAY(DATE '2020-01-01', 1)", "TRUNC(1, '1')", "STRING(1)", "INT64('1')",
    "BOOL('true')", "FLOAT64('1')", "LAX_INT64('1')", "UNNEST(1)", "EXISTS(1)", "1 IN UNNEST(1)",
    "1 BETWEEN 'a' AND 'b'", "1 LIKE 'a'", "'a' LIKE 1", "CASE WHEN 1 THEN 1 END", "CASE 1 WHEN 'a' THEN 1 END",
    # a second round: more functions, supertype-less branches and aggregates of the wrong type
    "TO_BASE32('a')", "FROM_HEX(1)", "SHA1(1)", "SHA512(1)", "MD5(TRUE)", "STARTS_WITH(1, 'a')",
    "ENDS_WITH('a', 1)", "TIMESTAMP_MILLIS('1')", "TIMESTAMP_MICROS(1.5)", "DATE_FROM_UNIX_DATE('1')",
    "UNIX_MILLIS(1)", "UNIX_MICROS('a')", "UNIX_DATE(1)", "JSON_QUERY(1, '$')", "JSON_EXTRACT(1, '$')",
    "ARRAY_TO_STRING(['a'], 1)", "ARRAY_TO_STRING([1.5], ',')", "FLOAT64(1)", "STRING(TRUE)", "BOOL(1)",
    "LAX_STRING('a')", "CODE_POINTS_TO_STRING([1.5])", "CODE_POINTS_TO_BYTES('a')", "IEEE_DIVIDE(TRUE, 1)",
    "IEEE_DIVIDE(1, 'a')", "CAST(TRUE AS FLOAT64)", "CAST(1.5 AS BOOL)", "CAST(b'a' AS INT64)",
    "CAST(DATE '2020-01-01' AS TIME)", "CAST(TIME '01:02:03' AS DATE)", "SAFE_CAST(1 AS TIMESTAMP)",
    "SAFE_CAST(TRUE AS BYTES)", "CAST(1 AS BYTES)", "IF(TRUE, 'a', 2)", "IF(TRUE, DATE '2020-01-01', 1)",
    "IF(FALSE, TRUE, 1)", "IF(TRUE, b'a', 'a')", "CASE WHEN TRUE THEN 1 ELSE 'a' END",
    "CASE WHEN TRUE THEN 'a' WHEN FALSE THEN 2 END", "CASE 1 WHEN 1 THEN 'a' ELSE 1.5 END",
    "COALESCE('a', TRUE)", "COALESCE(DATE '2020-01-01', 1)", "IFNULL(TRUE, 1)", "NULLIF('a', 1)",
    "GREATEST('a', TRUE)", "LEAST(DATE '2020-01-01', 1)", "1 IN ('a', 'b')", "'a' IN (1, 2)", "TRUE IN (1)",
    "[1, 'a']", "[TRUE, 1]", "[DATE '2020-01-01', 1]", "(SELECT 1 AS v UNION ALL SELECT 'a' LIMIT 1)",
    "(SELECT TRUE AS v UNION DISTINCT SELECT 1 LIMIT 1)", "(SELECT LOGICAL_OR(x) FROM UNNEST([1]) AS x)",
    "(SELECT BIT_AND(x) FROM UNNEST([1.5]) AS x)", "(SELECT BIT_OR(x) FROM UNNEST(['a']) AS x)",
    "(SELECT BIT_XOR(x) FROM UNNEST([TRUE]) AS x)", "(SELECT SUM(x) FROM UNNEST(['a']) AS x)",
    "(SELECT SUM(x) FROM UNNEST([TRUE]) AS x)", "(SELECT AVG(x) FROM UNNEST(['a']) AS x)",
    "(SELECT STRING_AGG(x) FROM UNNEST([1.5]) AS x)", "(SELECT STRING_AGG(x, 1) FROM UNNEST(['a']) AS x)",
    "(SELECT COUNTIF(x) FROM UNNEST(['a']) AS x)", "(SELECT MIN(x, 2) FROM UNNEST([1]) AS x)",
    "(SELECT ANY_VALUE(x, 1) FROM UNNEST([1]) AS x)", "(SELECT COUNT(x, 1) FROM UNNEST([1]) AS x)",
    "(SELECT LOGICAL_AND(x, TRUE) FROM UNNEST([TRUE]) AS x)", "(SELECT STRING_AGG(x, ',', ',') FROM UNNEST(['a']) AS x)",
    "DATE_SUB(DATE '2020-01-01', INTERVAL '1' DAY)", "DATETIME_ADD(DATETIME '2020-01-01 00:00:00', INTERVAL 1.5 DAY)",
    "TIMESTAMP_ADD(TIMESTAMP '2020-01-01 00:00:00+00', INTERVAL '1' HOUR)", "TIME_ADD(TIME '01:00:00', INTERVAL TRUE HOUR)",
    "DATE_ADD(DATE '2020-01-01', INTERVAL DATE '2020-01-01' DAY)", "ARRAY_LENGTH(DATE '2020-01-01')",
    "UPPER(TRUE)", "LENGTH(DATE '2020-01-01')", "ABS(TRUE)", "SQRT(DATE '2020-01-01')", "ROUND('1.5')",
]


def sweep(verbose: bool = False, answered: list[str] | None = None) -> tuple[int, int, list[tuple[str, str]]]:
    """(queries run, errors seen, [(query, message)] of messages with DuckDB terms); the wrong queries the local
    warehouse answered (BigQuery rejects each) are appended to `answered`."""
    con = connection()
    cases = [c for c in load_cases() if c.error]
    cases += [Case(section="wrong", doc="", sql=s, error="") for s in WRONG]
    errors, found = 0, []
    for case in cases:
        try:
            evaluate(con, case)
        except Exception as exc:  # noqa: BLE001 - every error is what is swept
            errors += 1
            message = f"{type(exc).__name__}: {exc}" if type(exc).__name__ != "QueryError" else str(exc)
            if DUCKDB_TERMS.search(message) or not isinstance(exc, Exception) or type(exc).__module__ == "duckdb":
                found.append((case.sql, message))
        else:
            if case.section == "wrong":
                if answered is not None:
                    answered.append(case.sql)
                if verbose:
                    print(f"ANSWERED: {case.sql}")
    return len(cases), errors, found


if __name__ == "__main__":
    answered: list[str] = []
    total, errors, found = sweep("-v" in sys.argv, answered)
    for query, message in found:
        print(f"{query}\n    -> {message[:300]}")
    print(f"{total} queries, {errors} errors, {len(found)} with DuckDB terms, {len(answered)} wrong queries answered")
