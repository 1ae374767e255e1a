"""BigQuery conformance of the local warehouse: every case's expected value and type is BigQuery's
documented answer (cases.yaml cites the section of the GoogleSQL reference each one comes from)."""

import pytest

from kfkit.errors import QueryError
from tests.sql_conformance.conformance import connection, evaluate, load_cases, same

CASES = load_cases()


@pytest.fixture(scope="module")
def con():
    return connection()


def test_the_suite_covers_at_least_150_documented_cases():
    assert len(CASES) >= 150
    assert all(case.doc for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_local_warehouse_answers_as_bigquery_documents(con, case):
    if case.error:
        with pytest.raises((QueryError, Exception), match=case.error):
            evaluate(con, case)
        return

    rows, types = evaluate(con, case)

    if case.rows is not None:
        assert types == case.columns
        assert same(rows, case.rows, case.approx), rows
        return
    assert types == {"v": case.type}
    actual = rows[0][0]
    if not case.ordered:
        assert sorted(actual.split(",")) == sorted(case.value.split(","))
    else:
        assert same(actual, case.value, case.approx), f"got {actual!r}, BigQuery documents {case.value!r}"


def test_docs_sql_md_is_generated_from_the_cases():
    from tests.sql_conformance.make_docs import DOC, render

    assert DOC.read_text() == render(), "docs/sql.md is stale: run python tests/sql_conformance/make_docs.py"


def test_no_case_is_translated_with_a_warning(caplog):
    # sqlglot only warns when it drops an argument or a modifier DuckDB lacks: kfkit refuses instead
    from kfkit.warehouse.sql import to_duckdb

    with caplog.at_level("WARNING", logger="sqlglot"):
        for case in CASES:
            try:
                to_duckdb(case.sql if case.rows is not None else f"SELECT {case.sql} AS v")
            except QueryError:
                pass

    assert [r.getMessage() for r in caplog.records if r.name.startswith("sqlglot")] == []
