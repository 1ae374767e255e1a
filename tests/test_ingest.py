import os
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from kfkit.components.ingest.ingest import SplitSpec, run_ingest
from kfkit.warehouse import synthetic
from kfkit.errors import ConfigError, IngestError, QueryError
from tests.conftest import DEFAULT_SPLIT, PENGUINS, leftovers, split_outputs


def read(path):
    return ds.dataset(path, format="parquet").to_table()


def test_ingest_writes_every_penguin_to_exactly_one_split(penguin_splits, warehouse):
    tables = {name: read(path) for name, path in penguin_splits.items()}
    expected = sum(b.num_rows for b in warehouse.query_batches(PENGUINS))

    assert sum(t.num_rows for t in tables.values()) == expected == 342
    assert 0.7 < tables["train"].num_rows / expected < 0.9
    assert all(t.num_rows > 0 for t in tables.values())
    assert tables["train"].schema.names == ["species", "island", "culmen_length_mm", "culmen_depth_mm",
                                           "flipper_length_mm", "body_mass_g", "sex"]


def test_ingest_gives_the_same_rows_to_the_same_split_every_run(penguin_splits, shared_root, tmp_path):
    outputs = split_outputs(tmp_path)

    run_ingest(PENGUINS, outputs, split=DEFAULT_SPLIT, label_column="species", local_root=str(shared_root))

    for name in outputs:
        assert read(outputs[name]).sort_by("body_mass_g").equals(read(penguin_splits[name]).sort_by("body_mass_g"))


def test_ingest_shards_large_results_and_reports_counts(shared_root, warehouse, tmp_path):
    synthetic.write_to_warehouse(warehouse, "tests.synthetic", 20_000, numeric=3, categorical=2)
    outputs = split_outputs(tmp_path)

    split = SplitSpec({"train": 0.5, "eval": 0.25, "test": 0.25}, "id")
    result = run_ingest("SELECT * FROM tests.synthetic", outputs, split=split,
                        label_column="label", local_root=str(shared_root), shard_rows=3000)

    assert sum(result.rows.values()) == 20_000
    assert result.shards["train"] == -(-result.rows["train"] // 3000)
    assert len(os.listdir(outputs["train"])) == result.shards["train"]
    assert abs(result.rows["train"] / 20_000 - 0.5) < 0.02
    assert {c["name"] for c in result.schema} >= {"id", "num_00", "cat_01", "label"}


def test_ingest_passes_query_parameters_as_values(shared_root, tmp_path):
    outputs = split_outputs(tmp_path)
    query = PENGUINS + " AND island = @island"

    result = run_ingest(query, outputs, split=DEFAULT_SPLIT, label_column="species", local_root=str(shared_root),
                        query_parameters={"island": "Dream"})

    islands = set(read(outputs["train"]).column("island").to_pylist())
    assert islands == {"Dream"} and sum(result.rows.values()) == 124


def test_query_parameter_values_are_never_spliced_into_sql(shared_root, tmp_path):
    with pytest.raises(IngestError, match="returned no rows"):
        run_ingest(PENGUINS + " AND island = @island", split_outputs(tmp_path), split=DEFAULT_SPLIT,
                   label_column="species", local_root=str(shared_root),
                   query_parameters={"island": "Dream' OR '1'='1"})


def _fails(tmp_path, exc_type, match, query=PENGUINS, split=DEFAULT_SPLIT, label="species", root=None, **kw):
    outputs = split_outputs(tmp_path / "out")
    (tmp_path / "out").mkdir()
    with pytest.raises(exc_type, match=match):
        run_ingest(query, outputs, split=split, label_column=label, local_root=root, **kw)
    assert leftovers(tmp_path / "out") == []


def test_ingest_rejects_unknown_table(tmp_path, shared_root):
    _fails(tmp_path, QueryError, r"table `local-project.nowhere.t` not found", query="SELECT * FROM nowhere.t",
           root=str(shared_root))


def test_ingest_rejects_sql_with_syntax_error(tmp_path, shared_root):
    _fails(tmp_path, QueryError, "syntax error at line 1", query="SELECT species FROM WHERE", root=str(shared_root))


def test_ingest_rejects_query_that_returns_no_rows(tmp_path, shared_root):
    _fails(tmp_path, IngestError, "returned no rows", query=PENGUINS + " AND island = 'Atlantis'",
           root=str(shared_root))


def test_ingest_rejects_query_without_label_column(tmp_path, shared_root):
    _fails(tmp_path, IngestError, "label column 'penguin_type' is not in the query result; columns are: species",
           label="penguin_type", root=str(shared_root))


def test_split_fractions_must_sum_to_one():
    with pytest.raises(ConfigError, match=r"must sum to 1, got train=0.8, eval=0.1, test=0.2"):
        SplitSpec({"train": 0.8, "eval": 0.1, "test": 0.2})


def test_ingest_rejects_nondeterministic_split_key(tmp_path, shared_root):
    query = "SELECT *, RAND() AS row_key FROM `bigquery-public-data.ml_datasets.penguins`"
    _fails(tmp_path, IngestError, r"split key column 'row_key' is computed with RAND\(\)", query=query,
           split=SplitSpec({"train": 0.8, "eval": 0.1, "test": 0.1}, "row_key"), root=str(shared_root))


def test_ingest_rejects_split_key_missing_from_result(tmp_path, shared_root):
    _fails(tmp_path, IngestError, "split key column 'penguin_id' is not in the query result",
           split=SplitSpec({"train": 0.8, "eval": 0.1, "test": 0.1}, "penguin_id"), root=str(shared_root))


def test_ingest_rejects_unreadable_local_root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    root.chmod(0)
    # root reads every directory; without the DAC override capabilities it obeys the mode like anyone
    drop = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
            "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    script = ("import sys; from kfkit.components.ingest.ingest import run_ingest; from tests.conftest import *\n"
              "from kfkit.errors import ConfigError\n"
              "try:\n run_ingest(PENGUINS, {}, split=DEFAULT_SPLIT, label_column='species', local_root=sys.argv[1])\n"
              "except ConfigError as e:\n print(e); sys.exit(3)")
    try:
        done = subprocess.run([*drop, sys.executable, "-c", script, str(root)], capture_output=True, text=True,
                              cwd=str(Path(__file__).parent.parent))
    finally:
        root.chmod(0o700)
    assert done.returncode == 3, done.stderr
    assert f"local root {str(root)!r} is not readable and writable" in done.stdout
    assert os.listdir(root) == []


def test_ingest_rejects_local_root_under_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    _fails(tmp_path, ConfigError, "cannot create local root", root=str(tmp_path / "file" / "root"))


def test_ingest_rejects_local_root_that_is_a_file(tmp_path):
    root = tmp_path / "root"
    root.write_text("not a directory")
    _fails(tmp_path, ConfigError, "exists but is not a directory", root=str(root))


def test_ingest_rejects_unknown_backend(tmp_path):
    _fails(tmp_path, ConfigError, "backend must be one of local, bigquery, got 'postgres'", backend="postgres")


def test_snapshot_id_names_the_rows_whatever_their_order(shared_root, tmp_path):
    ordered = [run_ingest(PENGUINS + f" ORDER BY body_mass_g {direction}", split_outputs(tmp_path / direction),
                          split=DEFAULT_SPLIT, label_column="species", local_root=str(shared_root))
               for direction in ("ASC", "DESC")]
    fewer = run_ingest(PENGUINS + " AND island = 'Dream'", split_outputs(tmp_path / "dream"), split=DEFAULT_SPLIT,
                       label_column="species", local_root=str(shared_root))

    assert ordered[0].snapshot == ordered[1].snapshot and ordered[0].snapshot.startswith("342-")
    assert fewer.snapshot != ordered[0].snapshot


def test_sample_data_is_loaded_once_and_a_dropped_sample_is_loaded_again(tmp_path):
    from kfkit.warehouse.local import PENGUINS_TABLE, TAXI_SAMPLE_VIEW, TAXI_TABLE, LocalWarehouse
    warehouse = LocalWarehouse(tmp_path)

    first = warehouse.ensure_sample_data()
    again = warehouse.ensure_sample_data()
    with warehouse.connect() as con:
        con.execute('DROP VIEW "kfkit-samples.chicago_taxi".trips')
    after_drop = warehouse.ensure_sample_data()

    assert sorted(first) == sorted([PENGUINS_TABLE, TAXI_TABLE, TAXI_SAMPLE_VIEW])
    assert again == []
    assert after_drop == [TAXI_SAMPLE_VIEW] and TAXI_SAMPLE_VIEW in warehouse.tables()
