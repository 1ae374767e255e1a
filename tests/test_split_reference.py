"""Split assignment against BigQuery's own definition, not against kfkit's code.

The reference is the split expression a team writes in BigQuery,
`ABS(MOD(FARM_FINGERPRINT(key), 10000)) < bound`, evaluated in SQL by DuckDB on fingerprints that
BigQuery's documentation prints:
https://cloud.google.com/bigquery/docs/reference/standard-sql/hash_functions#farm_fingerprint
(the CONCAT example: "1footrue", "2applefalse", "3true"), and "alphabet" from BigQuery's
`SELECT FARM_FINGERPRINT("alphabet")` (the same value as Guava's farmHashFingerprint64).
"""

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from kfkit.components.ingest.ingest import SplitSpec, row_fingerprints, stream_to_splits
from kfkit.warehouse.local import LocalWarehouse

DOCUMENTED = {
    "1footrue": -1541654101129638711,     # bucket 8711
    "2applefalse": 2794438866806483259,   # bucket 3259
    "3true": -4880158226897771312,        # bucket 1312
    "alphabet": -2427165924636348523,     # bucket 8523
}


def bigquery_split(bounds: tuple[int, int]) -> dict[str, str]:
    """Each documented key's split by the BigQuery expression, evaluated by DuckDB."""
    rows = ", ".join(f"('{key}', {fp}::BIGINT)" for key, fp in DOCUMENTED.items())
    sql = f"""
        SELECT key, CASE WHEN ABS(MOD(fp, 10000)) < {bounds[0]} THEN 'train'
                         WHEN ABS(MOD(fp, 10000)) < {bounds[1]} THEN 'eval'
                         ELSE 'test' END
        FROM (VALUES {rows}) AS t(key, fp)"""
    return dict(duckdb.sql(sql).fetchall())


def kfkit_split(table: pa.Table, split: SplitSpec, tmp_path, key_column: str = "key") -> dict[str, str]:
    outputs = {name: tmp_path / name for name in split.fractions}
    stream_to_splits(iter(table.to_batches()), table.schema, split, outputs)
    placed = {}
    for name, path in outputs.items():
        for value in ds.dataset(path).to_table().column(key_column).to_pylist():
            assert value not in placed, f"{value!r} is in two splits"
            placed[value] = name
    return placed


def test_kfkit_fingerprints_the_documented_strings_as_bigquery_does():
    batch = pa.record_batch({"key": list(DOCUMENTED)})

    assert row_fingerprints(batch, ["key"]).tolist() == list(DOCUMENTED.values())


@pytest.mark.parametrize("fractions, bounds", [
    ({"train": 0.8711, "eval": 0.1, "test": 0.0289}, (8711, 9711)),   # "1footrue" exactly on train's bound
    ({"train": 0.8712, "eval": 0.1, "test": 0.0288}, (8712, 9712)),   # one bucket above
    ({"train": 0.8710, "eval": 0.1, "test": 0.0290}, (8710, 9710)),   # one bucket below
    ({"train": 0.5, "eval": 0.3711, "test": 0.1289}, (5000, 8711)),   # on eval's upper bound
    ({"train": 0.5, "eval": 0.3712, "test": 0.1288}, (5000, 8712)),
    ({"train": 0.1312, "eval": 0.7211, "test": 0.1477}, (1312, 8523)),  # two rows on two bounds
    ({"train": 0.8, "eval": 0.1, "test": 0.1}, (8000, 9000)),         # the default split
])
def test_each_row_lands_where_bigquerys_split_expression_puts_it(tmp_path, fractions, bounds):
    table = pa.table({"key": list(DOCUMENTED), "value": [1.0, 2.0, 3.0, 4.0]})

    placed = kfkit_split(table, SplitSpec(fractions, key="key"), tmp_path)

    assert placed == bigquery_split(bounds)


def test_a_multi_column_key_splits_as_the_documented_bigquery_expression(tmp_path, shared_root):
    # kfkit's multi-column key is CONCAT(IFNULL(CAST(a AS STRING), ''), '\x1f', ...) (docs/components.md);
    # evaluated here in BigQuery SQL by the local warehouse, whose FARM_FINGERPRINT is checked against
    # BigQuery's documented values in the SQL conformance suite
    a = [1, 2, 3, None, 5, 6, 7, 8, 9, 10, 11, 12] * 25
    b = ["x", "y", None, "z", "apple", "", "foo", "bar", "x", "x", "q", "r"] * 25
    ids = list(range(len(a)))
    table = pa.table({"id": ids, "a": pa.array(a, pa.int64()), "b": b})
    warehouse = LocalWarehouse(shared_root)
    warehouse.write_table("kfkit-test.split.rows", table)
    sql = r"""
        SELECT id, CASE WHEN bucket < 6000 THEN 'train' WHEN bucket < 8500 THEN 'eval' ELSE 'test' END AS split
        FROM (SELECT id, ABS(MOD(FARM_FINGERPRINT(CONCAT(IFNULL(CAST(a AS STRING), ''), '\x1f',
                                                       IFNULL(CAST(b AS STRING), ''))), 10000)) AS bucket
              FROM `kfkit-test.split.rows`)"""
    expected = {}
    for batch in warehouse.query_batches(sql):
        expected.update(zip(batch.column("id").to_pylist(), batch.column("split").to_pylist()))

    placed = kfkit_split(table, SplitSpec({"train": 0.6, "eval": 0.25, "test": 0.15}, key="a, b"), tmp_path,
                         key_column="id")

    assert placed == expected
    assert len(set(placed.values())) == 3


def test_a_numeric_key_is_spelled_as_bigquerys_cast_to_string(tmp_path):
    # CAST(NUMERIC AS STRING) writes no trailing zeros after the point and no exponent
    # (https://cloud.google.com/bigquery/docs/reference/standard-sql/conversion_functions#cast_as_string):
    # a NUMERIC key must split like those strings, not like Arrow's "1.500000000" or "-1E-9"
    import decimal

    spelled = ["1.5", "100", "-0.000000001", "12345678901234567890.123456789", "0"] * 40
    ids = list(range(len(spelled)))
    numeric = pa.table({"id": ids, "key": pa.array([decimal.Decimal(s) for s in spelled], pa.decimal128(38, 9))})
    strings = pa.table({"id": ids, "key": spelled})
    split = SplitSpec({"train": 0.5, "eval": 0.25, "test": 0.25}, key="key")

    by_numeric = kfkit_split(numeric, split, tmp_path / "numeric", key_column="id")
    by_string = kfkit_split(strings, split, tmp_path / "string", key_column="id")

    assert by_numeric == by_string
