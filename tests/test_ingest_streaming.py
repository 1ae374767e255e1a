"""Ingest's streaming core with exact expectations: shard sizes, the snapshot id computed from
BigQuery's documented FARM_FINGERPRINT values, schema drift between batches, and each refusal's
message."""

import math

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from kfkit.components.ingest.ingest import (IngestResult, SplitSpec, check_columns, check_key_is_deterministic,
                                      schema_description, stream_to_splits)
from kfkit.errors import ConfigError, IngestError
from tests.test_split_reference import DOCUMENTED

ALL_TRAIN = SplitSpec({"train": 1.0}, key="key")


def run(tmp_path, batches, split=ALL_TRAIN, shard_rows=1_000_000, schema=None):
    outputs = {name: tmp_path / name for name in split.fractions}
    schema = schema or batches[0].schema
    rows, shards, snapshot = stream_to_splits(iter(batches), schema, split, outputs, shard_rows=shard_rows)
    return outputs, rows, shards, snapshot


def test_the_snapshot_is_the_row_count_and_the_sum_of_documented_fingerprints_mod_2_64(tmp_path):
    keys = list(DOCUMENTED)
    batches = [pa.record_batch({"key": keys[:3]}), pa.record_batch({"key": keys[3:]})]

    _, rows, _, snapshot = run(tmp_path, batches)

    expected = sum(fp % 2**64 for fp in DOCUMENTED.values()) % 2**64
    assert snapshot == f"4-{expected:016x}"
    assert rows == {"train": 4}


def test_shards_hold_at_most_shard_rows_and_fill_up_across_batches(tmp_path):
    batches = [pa.record_batch({"key": [f"k{i}" for i in range(3)]}), pa.record_batch({"key": ["k3", "k4"]})]

    outputs, rows, shards, _ = run(tmp_path, batches, shard_rows=2)

    files = sorted(p.name for p in outputs["train"].iterdir())
    assert files == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert [pq.read_metadata(outputs["train"] / f).num_rows for f in files] == [2, 2, 1]
    assert rows == {"train": 5} and shards == {"train": 3}
    assert pq.read_schema(outputs["train"] / files[0]).field("key").type == pa.string()


def test_a_split_that_gets_no_rows_is_one_empty_readable_shard(tmp_path):
    split = SplitSpec({"train": 1.0, "test": 0.0}, key="key")

    outputs, rows, shards, _ = run(tmp_path, [pa.record_batch({"key": ["a", "b"]})], split=split)

    assert rows == {"train": 2, "test": 0} and shards == {"train": 1, "test": 1}
    assert ds.dataset(outputs["test"]).to_table().num_rows == 0


def test_a_batch_whose_types_drift_is_cast_to_the_first_schema(tmp_path):
    schema = pa.schema([("key", pa.string()), ("n", pa.int64())])
    batches = [pa.record_batch({"key": ["a"], "n": pa.array([1], pa.int64())}),
               pa.record_batch({"key": ["b"], "n": pa.array([2], pa.int32())})]

    outputs, rows, _, _ = run(tmp_path, batches, schema=schema)

    table = ds.dataset(outputs["train"]).to_table()
    assert table.schema == schema and sorted(table.column("n").to_pylist()) == [1, 2]


def test_no_rows_at_all_is_refused_and_leaves_no_output(tmp_path):
    schema = pa.schema([("key", pa.string())])

    with pytest.raises(IngestError, match=r"^the query returned no rows: check its WHERE clause and query parameters$"):
        run(tmp_path, [], schema=schema)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_split_without_an_output_path_is_named(tmp_path):
    split = SplitSpec({"train": 0.5, "eval": 0.25, "test": 0.25})

    with pytest.raises(ConfigError, match=r"^no output path for split\(s\) eval, test$"):
        stream_to_splits(iter([]), pa.schema([("a", pa.int64())]), split, {"train": tmp_path / "t"})


@pytest.mark.parametrize("fractions", [{"train": 1.0}, {"train": 0.0, "test": 1.0}, {"a": 0.3, "b": 0.7000001}])
def test_fractions_from_0_to_1_summing_to_1_are_accepted(fractions):
    assert SplitSpec(fractions).fractions == fractions


@pytest.mark.parametrize("fractions, message", [
    ({}, r"^split fractions are empty: give at least one split, e.g. train=1.0$"),
    ({"train": 1.5, "test": -0.5}, r"^split fraction for 'train' must be between 0 and 1, got 1.5$"),
    ({"train": -0.1, "test": 1.1}, r"^split fraction for 'train' must be between 0 and 1, got -0.1$"),
    ({"train": math.nan}, r"^split fraction for 'train' must be between 0 and 1, got nan$"),
    ({"train": "0.8", "test": 0.2}, r"^split fraction for 'train' must be between 0 and 1, got '0.8'$"),
    ({"train": 0.8, "test": 0.1}, r"^split fractions must sum to 1, got train=0.8, test=0.1 \(sum 0.9\)$"),
    ({"train": 0.5, "test": 0.500002}, r"^split fractions must sum to 1, got train=0.5, test=0.500002"),
])
def test_bad_fractions_are_refused_naming_the_split(fractions, message):
    with pytest.raises(ConfigError, match=message):
        SplitSpec(fractions)


@pytest.mark.parametrize("key", ["", "   "])
def test_an_empty_split_key_is_refused(key):
    message = r"^split key is empty: name the column\(s\) that identify a row, or '\*' for the whole row$"
    with pytest.raises(ConfigError, match=message):
        SplitSpec({"train": 1.0}, key=key)


def test_missing_label_and_key_columns_are_named_with_the_columns_there_are():
    schema = pa.schema([("id", pa.int64()), ("species", pa.string())])

    with pytest.raises(IngestError, match=r"^label column 'label' is not in the query result; columns are: id, species$"):
        check_columns(schema, "label", SplitSpec({"train": 1.0}))
    with pytest.raises(IngestError, match=r"^split key column 'uid' is not in the query result; columns are: id, species$"):
        check_columns(schema, "species", SplitSpec({"train": 1.0}, key="id, uid"))
    check_columns(schema, "", SplitSpec({"train": 1.0}, key="id"))  # no label: nothing to check


def test_a_nondeterministic_key_is_refused_naming_the_column_and_the_function():
    query = "SELECT id, RAND() AS r FROM t"

    with pytest.raises(IngestError, match=r"^the whole row is the split key, and column 'r' is computed with RAND\(\)"):
        check_key_is_deterministic(query, SplitSpec({"train": 1.0}))
    with pytest.raises(IngestError, match=r"^split key column 'r' is computed with RAND\(\), which changes from run to "
                                          r"run, so rows would move between splits; key the split on a stable column "
                                          r"\(an id\) instead$"):
        check_key_is_deterministic(query, SplitSpec({"train": 1.0}, key="r"))
    check_key_is_deterministic(query, SplitSpec({"train": 1.0}, key="id"))


def test_the_result_describes_the_schema_and_serialises():
    schema = pa.schema([("id", pa.int64()), ("name", pa.string())])
    result = IngestResult({"train": 1}, {"train": 1}, schema_description(schema), 0.5, "1-00")

    assert schema_description(schema) == [{"name": "id", "type": "int64"}, {"name": "name", "type": "string"}]
    assert '"snapshot": "1-00"' in result.to_json() and '"rows": {' in result.to_json()


def test_a_dictionary_encoded_key_splits_as_its_plain_strings(tmp_path):
    split = SplitSpec({"train": 0.5, "test": 0.5}, key="key")
    plain = pa.record_batch({"key": list(DOCUMENTED)})
    encoded = pa.record_batch({"key": pa.array(list(DOCUMENTED)).dictionary_encode()})

    *_, plain_snapshot = run(tmp_path / "plain", [plain], split=split)
    outputs, rows, _, encoded_snapshot = run(tmp_path / "encoded", [encoded], split=split)

    assert encoded_snapshot == plain_snapshot
    assert rows == {"train": 2, "test": 2}  # buckets 8711, 3259, 1312, 8523 against a bound of 5000


def test_outputs_may_go_to_directories_that_do_not_exist_yet(tmp_path):
    outputs = {"train": tmp_path / "a" / "b" / "train"}

    stream_to_splits(iter([pa.record_batch({"key": ["x"]})]), pa.schema([("key", pa.string())]), ALL_TRAIN, outputs)

    assert ds.dataset(outputs["train"]).to_table().num_rows == 1


def test_bigquery_job_labels_follow_bigquerys_rules():
    from kfkit.components.ingest.ingest import _bq_label

    assert _bq_label("Penguin Research/Team #1") == "penguin-research-team--1"
    assert _bq_label("x" * 70) == "x" * 63


def test_a_bigquery_ingest_reports_its_staging_table_shards_and_progress(tmp_path, warehouse, caplog):
    from kfkit.components.ingest.ingest import run_ingest
    from kfkit.adapters.bigquery import BigQueryAdapter
    from tests.conftest import PENGUINS
    from tests.test_bigquery_adapter import FakeClient, FakeReadClient, bq_schema

    penguins = pa.Table.from_batches(list(warehouse.query_batches(PENGUINS)))
    adapter = BigQueryAdapter("my-proj", "EU", client=FakeClient(bq_schema(penguins)), read_client=FakeReadClient(penguins))
    outputs = {name: tmp_path / name for name in ("train", "eval", "test")}

    with caplog.at_level("INFO", logger="kfkit.ingest"):
        result = run_ingest(PENGUINS, outputs, split=SplitSpec({"train": 0.8, "eval": 0.1, "test": 0.1}),
                            label_column="species", backend="bigquery", adapter=adapter, shard_rows=100)

    table = result.extra["table"]
    assert table.startswith("ingest_") and len(table) == len("ingest_") + 16
    assert result.extra == {"table_uri": f"https://www.googleapis.com/bigquery/v2/projects/my-proj/datasets/kfkit_staging/"
                                         f"tables/{table}", "project": "my-proj", "dataset": "kfkit_staging", "table": table,
                            "bytes_processed_estimate": 1000, "result_bytes": 1, "path": "streamed", "selects": {},
                            "location": "EU"}
    assert result.source_table == f"my-proj.kfkit_staging.{table}" and result.job_id == "kfkit_ingest_123"
    assert result.shards["train"] == math.ceil(result.rows["train"] / 100) and result.shards["train"] > 1
    assert result.schema == schema_description(pa.schema([(f.name, f.type) for f in penguins.schema]))
    assert 0 < result.seconds < 600
    progress = [m for m in caplog.messages if m.startswith("ingest: ") and " rows streamed " in m]
    assert progress and progress[-1].startswith(f"ingest: {penguins.num_rows} rows streamed (")
    assert progress[-1].endswith(" rows/s)") and float(progress[-1].split("(")[1].split()[0]) > 0


def test_a_local_ingest_reports_its_shards_schema_and_time(tmp_path, shared_root, caplog):
    from kfkit.components.ingest.ingest import run_ingest
    from tests.conftest import PENGUINS

    outputs = {name: tmp_path / name for name in ("train", "test")}

    with caplog.at_level("INFO", logger="kfkit.ingest"):
        result = run_ingest(PENGUINS, outputs, split=SplitSpec({"train": 0.5, "test": 0.5}), label_column="species",
                            local_root=str(shared_root), shard_rows=50)

    assert result.shards == {name: math.ceil(result.rows[name] / 50) for name in outputs}
    assert [c["name"] for c in result.schema][:2] == ["species", "island"]
    assert 0 < result.seconds < 600 and result.source_table is None
    assert any(m.startswith(f"ingest: {sum(result.rows.values())} rows streamed (") for m in caplog.messages)


def test_a_splits_rows_keep_the_order_they_were_streamed_in_across_batches(tmp_path):
    keys = [f"k{i}" for i in range(50)]
    batches = [pa.record_batch({"key": keys[i:i + 7]}) for i in range(0, 50, 7)]

    outputs, rows, _, _ = run(tmp_path, batches, split=SplitSpec({"train": 0.5, "test": 0.5}, key="key"))

    train = pq.read_table(outputs["train"]).column("key").to_pylist()
    test = pq.read_table(outputs["test"]).column("key").to_pylist()
    assert sorted(train + test) == sorted(keys) and train and test
    assert train == [k for k in keys if k in set(train)] and test == [k for k in keys if k in set(test)]


def test_a_stream_that_fails_midway_leaves_no_output(tmp_path):
    def batches():
        yield pa.record_batch({"key": ["a", "b"]})
        yield pa.record_batch({"key": ["c"]})
        raise ConnectionError("connection reset")

    with pytest.raises(ConnectionError, match="^connection reset$"):
        stream_to_splits(batches(), pa.schema([("key", pa.string())]), ALL_TRAIN, {"train": tmp_path / "train"})

    assert sorted(tmp_path.iterdir()) == []
