import json
import os
import re
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from kfkit.components.train.train import Hyperparameters, strategy_from_env, train
from kfkit.components.validate.validate import validate
from kfkit.warehouse import synthetic
from kfkit.errors import ConfigError, ValidationError
from kfkit.serving.model_io import LoadedModel, RequestError, direct_call, flat_call_order
from kfkit.tabular import ModelSpec, build_spec, features_to_numpy
from tests.conftest import leftovers, split_outputs
from kfkit.components.ingest.ingest import SplitSpec, run_ingest

PENGUIN = {"island": "Biscoe", "culmen_length_mm": 47.5, "culmen_depth_mm": 15.0, "flipper_length_mm": 218.0,
           "body_mass_g": 4950.0, "sex": "FEMALE"}


def test_exported_model_takes_raw_rows_and_predicts_the_species(penguin_model, penguin_splits):
    model = LoadedModel(penguin_model)
    test = ds.dataset(penguin_splits["test"]).to_table()

    outputs = model.predict_table(test)

    accuracy = np.mean([c.decode() == s for c, s in zip(outputs["classes"], test.column("species").to_pylist())])
    assert accuracy > 0.9
    assert outputs["scores"].shape == (test.num_rows, 3)
    assert np.allclose(outputs["scores"].sum(axis=1), 1.0, atol=1e-5)


def test_model_metadata_names_signature_label_task_and_classes(penguin_model):
    spec = ModelSpec.load(penguin_model)
    assert spec.signature == {"island": "string", "culmen_length_mm": "float32", "culmen_depth_mm": "float32",
                              "flipper_length_mm": "float32", "body_mass_g": "float32", "sex": "string"}
    assert spec.task == "multiclass" and spec.label == "species" and len(spec.classes) == 3


def test_saved_model_serving_signature_accepts_a_batch_of_raw_instances(penguin_model):
    import tensorflow as tf
    fn = tf.saved_model.load(str(penguin_model)).signatures["serving_default"]

    out = fn(**{k: tf.constant([v, v]) for k, v in PENGUIN.items()})

    assert out["classes"].numpy().tolist() == [b"Gentoo penguin (Pygoscelis papua)"] * 2


def test_flat_call_answers_exactly_what_the_keyword_call_answers(penguin_model, penguin_splits):
    model = LoadedModel(penguin_model)
    features = features_to_numpy(ds.dataset(penguin_splits["test"]).to_table(), model.spec)
    assert model._flat_order == sorted(model.signature)  # the flat call is the one taken

    flat = model.predict_arrays(features)
    model._flat_order = None
    by_keyword = model.predict_arrays(features)

    assert flat.keys() == by_keyword.keys()
    for name in flat:
        assert np.array_equal(flat[name], by_keyword[name])


def test_direct_call_answers_exactly_what_tf_constant_and_the_flat_call_answer(penguin_model, penguin_splits):
    model = LoadedModel(penguin_model)
    features = features_to_numpy(ds.dataset(penguin_splits["test"]).to_table(), model.spec)
    assert model._direct is not None and model._direct.fn is model._flat_fn
    calls, real = [], model._direct

    class Spy:  # the direct call, counted: it is the one taken, not its fallback
        fn = real.fn

        def __call__(self, arrays):
            calls.append(len(arrays[0]))
            return real(arrays)

    model._direct = Spy()
    direct = model.predict_arrays(features)
    model._direct = None
    flat = model.predict_arrays(features)

    assert calls == [len(features["island"])]

    assert direct.keys() == flat.keys()
    for name in flat:
        assert direct[name].dtype == flat[name].dtype and np.array_equal(direct[name], flat[name])
    assert len(set(flat["classes"].tolist())) > 1


def test_a_call_the_direct_way_fails_raises_the_error_tensorflow_names_it_with(penguin_model):
    import tensorflow as tf

    model = LoadedModel(penguin_model)
    rows = {name: np.array([[value]]) for name, value in PENGUIN.items()}  # a column of rank 2: no such input

    with pytest.raises(tf.errors.InvalidArgumentError) as direct:
        model.predict_arrays(rows)
    model._direct = None
    with pytest.raises(tf.errors.InvalidArgumentError) as flat:
        model.predict_arrays(rows)

    assert str(direct.value) == str(flat.value)


def test_a_column_that_is_not_a_numpy_array_goes_the_old_way(penguin_model):
    import tensorflow as tf

    model = LoadedModel(penguin_model)
    rows = {name: np.array([value]) for name, value in PENGUIN.items()}
    rows["body_mass_g"] = tf.constant([4950], dtype=tf.int32)  # EagerTensor would cast it; tf.constant refuses

    with pytest.raises((TypeError, ValueError)):
        model.predict_arrays(rows)


def test_direct_call_is_not_made_for_a_function_it_would_answer_otherwise(penguin_model):
    model = LoadedModel(penguin_model)
    fn = model._flat_fn

    class Shifted:  # the function's parts, but its own call answers otherwise than a direct call of them
        _inference_function, captured_inputs = fn._inference_function, fn.captured_inputs

        def _call_flat(self, tensors, captures):
            return {k: (v + 1 if v.dtype.is_floating else v) for k, v in fn._call_flat(tensors, captures).items()}

    class Same(Shifted):
        def _call_flat(self, tensors, captures):
            return fn._call_flat(tensors, captures)

    rest = (model._flat_order, model._tf_types, model.signature)

    assert direct_call(model._tf, Same(), *rest) is not None
    assert direct_call(model._tf, Shifted(), *rest) is None
    assert direct_call(model._tf, object(), *rest) is None


def test_flat_call_is_not_taken_when_the_signature_does_not_match_the_function(penguin_model):
    model = LoadedModel(penguin_model)
    int_island = dict(model.signature, island="int64")
    missing = {k: v for k, v in model.signature.items() if k != "sex"}
    extra = dict(model.signature, beak="string")

    orders = [flat_call_order(model.fn, signature, model._tf_types) for signature in (int_island, missing, extra)]

    assert orders == [None, None, None]
    assert flat_call_order(object(), model.signature, model._tf_types) is None


def test_model_imputes_missing_values_instead_of_failing(penguin_model):
    row = dict(PENGUIN, culmen_length_mm=None, sex=None)
    [prediction] = LoadedModel(penguin_model).predict_instances([row])
    assert prediction["classes"] == "Gentoo penguin (Pygoscelis papua)"


@pytest.mark.parametrize("instance, message", [
    ({k: v for k, v in PENGUIN.items() if k != "island"}, "instance 0: missing field 'island' (string)"),
    (dict(PENGUIN, beak_colour="orange"), "instance 0: unknown field 'beak_colour'"),
    (dict(PENGUIN, body_mass_g="heavy"), "instance 0: field 'body_mass_g' expects a number, got 'heavy'"),
    (dict(PENGUIN, island=3), "instance 0: field 'island' expects a string, got 3"),
])
def test_request_that_does_not_match_the_signature_is_refused_naming_the_field(penguin_model, instance, message):
    with pytest.raises(RequestError, match=re.escape(message)):
        LoadedModel(penguin_model).predict_instances([instance])


def test_same_data_and_seed_give_the_same_metrics(penguin_splits, penguin_validation, tmp_path):
    runs = [train(penguin_splits["train"], penguin_splits["eval"], penguin_validation.statistics,
                  penguin_validation.schema, "species", tmp_path / f"m{i}", Hyperparameters(epochs=3, seed=11))
            for i in range(2)]
    assert runs[0].metrics == pytest.approx(runs[1].metrics, rel=1e-5)


def test_training_says_which_device_it_ran_on_and_a_cpu_machine_lists_no_gpu(penguin_splits, penguin_validation,
                                                                             tmp_path, caplog):
    """The GPU trainer image's device check, on the CPU: the code path is the same, the answer empty."""
    from kfkit.components.train.train import accelerators

    with caplog.at_level("INFO", logger="kfkit.train"):
        train(penguin_splits["train"], penguin_splits["eval"], penguin_validation.statistics, penguin_validation.schema,
              "species", tmp_path / "m", Hyperparameters(epochs=1, seed=1))

    assert accelerators() == []
    assert re.search(r"trained multiclass model on \d+ features .* on CPU$", caplog.text, re.M)


@pytest.fixture(scope="module")
def synthetic_splits(tmp_path_factory, shared_root):
    from kfkit.warehouse.local import LocalWarehouse
    out = {}
    for task in ("binary", "regression"):
        synthetic.write_to_warehouse(LocalWarehouse(shared_root), f"tests.synth_{task}", 3000, numeric=4,
                                     categorical=2, task=task, seed=3)
        outputs = split_outputs(tmp_path_factory.mktemp(task))
        run_ingest(f"SELECT * FROM tests.synth_{task}", outputs, label_column="label", local_root=str(shared_root),
                   split=SplitSpec({"train": 0.7, "eval": 0.15, "test": 0.15}, "id"))
        out[task] = outputs
    return out


@pytest.mark.parametrize("task, metric", [("binary", "eval_accuracy"), ("regression", "eval_mae")])
def test_task_is_inferred_from_the_label_type(synthetic_splits, tmp_path, task, metric):
    splits = synthetic_splits[task]
    v = validate(splits, "label")

    result = train(splits["train"], splits["eval"], v.statistics, v.schema, "label", tmp_path / "m",
                   Hyperparameters(epochs=3, batch_size=256), exclude_columns=["id"])

    assert result.spec.task == task and metric in result.metrics
    assert "id" not in result.spec.signature


def test_training_refuses_a_single_class_label(penguin_validation):
    stats = json.loads(json.dumps(penguin_validation.statistics))
    stats["columns"]["species"]["frequencies"] = {"Adelie": 100}
    stats["columns"]["species"]["distinct"] = 1
    with pytest.raises(ValidationError, match="label 'species' has a single class"):
        build_spec(stats, penguin_validation.schema, "species", task="multiclass")


def test_training_refuses_an_all_null_feature(penguin_validation):
    stats = json.loads(json.dumps(penguin_validation.statistics))
    stats["columns"]["sex"]["count"] = 0
    with pytest.raises(ValidationError, match="feature 'sex' is null in every training row"):
        build_spec(stats, penguin_validation.schema, "species")


def test_training_refuses_a_schema_feature_missing_from_the_split(penguin_splits, penguin_validation, tmp_path):
    schema = json.loads(json.dumps(penguin_validation.schema))
    schema["columns"].append({"name": "beak_colour", "kind": "categorical", "type": "VARCHAR"})
    stats = json.loads(json.dumps(penguin_validation.statistics))
    stats["columns"]["beak_colour"] = {"kind": "categorical", "type": "VARCHAR", "count": 5, "frequencies": {"o": 5}}
    with pytest.raises(ValidationError, match="column\\(s\\) 'beak_colour' of the model's schema are missing"):
        train(penguin_splits["train"], penguin_splits["eval"], stats, schema, "species", tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_bad_hyperparameters_are_named():
    with pytest.raises(ConfigError, match="learning_rate must be > 0, got -1"):
        Hyperparameters(learning_rate=-1).check()


def test_distribution_strategy_comes_from_tf_config(monkeypatch):
    import tensorflow as tf
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert strategy_from_env() is tf.distribute.get_strategy()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 0}}))
    assert strategy_from_env() is tf.distribute.get_strategy()  # one worker: no multi-worker strategy


@pytest.fixture(scope="module")
def taxi(tmp_path_factory, shared_root):
    outputs = split_outputs(tmp_path_factory.mktemp("taxi"))
    run_ingest("SELECT EXTRACT(HOUR FROM trip_start_timestamp) AS trip_start_hour, trip_miles, payment_type, "
               "CAST(tips > 0 AS INT64) AS tipped "
               "FROM `bigquery-public-data.chicago_taxi_trips.taxi_trips` WHERE trip_miles IS NOT NULL", outputs,
               label_column="tipped",
               local_root=str(shared_root), split=SplitSpec({"train": 0.8, "eval": 0.1, "test": 0.1}))
    return outputs, validate(outputs, "tipped")


def test_integer_codes_go_through_integer_lookup_in_the_exported_model(taxi, tmp_path):
    splits, v = taxi
    assert len(v.statistics["columns"]["trip_start_hour"]["frequencies"]) == 24

    result = train(splits["train"], splits["eval"], v.statistics, v.schema, "tipped", tmp_path / "m",
                   Hyperparameters(epochs=2, batch_size=512), categorical_columns=["trip_start_hour"])

    model = LoadedModel(tmp_path / "m")
    assert result.spec.signature["trip_start_hour"] == "int64" and result.spec.task == "binary"
    rows = [{"trip_start_hour": h, "trip_miles": 2.0, "payment_type": "Cash"} for h in (8, None, 99)]
    predictions = model.predict_instances(rows)  # a null and an hour never seen: the OOV bucket
    assert all(abs(sum(p["scores"]) - 1) < 1e-5 for p in predictions)
    with pytest.raises(RequestError, match="field 'trip_start_hour' expects an integer, got '8'"):
        model.predict_instances([dict(rows[0], trip_start_hour="8")])


def test_only_integer_or_string_columns_can_be_categorical(taxi):
    _, v = taxi
    with pytest.raises(ConfigError, match="categorical_columns: 'trip_miles' is DOUBLE"):
        build_spec(v.statistics, v.schema, "tipped", categorical=["trip_miles"])


def test_regression_mae_is_in_the_label_units(penguin_splits, tmp_path):
    v = validate(penguin_splits, "body_mass_g")  # grams: a standard deviation near 800
    result = train(penguin_splits["train"], penguin_splits["eval"], v.statistics, v.schema, "body_mass_g",
                   tmp_path / "m", Hyperparameters(epochs=20, seed=3, patience=50))

    split = ds.dataset(penguin_splits["eval"]).to_table()
    predicted = LoadedModel(tmp_path / "m").predict_table(split)["value"]
    grams = np.mean(np.abs(predicted - split.column("body_mass_g").to_numpy()))
    assert result.spec.task == "regression" and result.spec.label_std > 100
    assert result.metrics["eval_mae"] == pytest.approx(grams, rel=1e-3)


def test_each_worker_reads_a_disjoint_share_of_the_rows(penguin_splits, penguin_validation, tmp_path):
    from kfkit.tabular import iter_batches
    spec = build_spec(penguin_validation.statistics, penguin_validation.schema, "species")
    table = ds.dataset(penguin_splits["train"]).to_table()
    one_shard = penguin_splits["train"]
    many = tmp_path / "many"
    many.mkdir()
    for i in range(4):  # four shards for three workers: by shard, one worker takes two
        pq.write_table(table.slice(i * 70, 70), many / f"part-{i:05d}.parquet")

    for dataset in (one_shard, many):
        shares = [np.concatenate([f["culmen_length_mm"] * 1e4 + f["body_mass_g"]
                                  for f, _ in iter_batches(dataset, spec, 64, share=(i, 3))])
                  for i in range(3)]

        assert sum(len(s) for s in shares) == table.num_rows
        every = np.sort(np.concatenate(shares))
        expected = np.sort(table.column("culmen_length_mm").to_numpy(zero_copy_only=False) * 1e4
                           + table.column("body_mass_g").to_numpy(zero_copy_only=False))
        assert np.array_equal(every.astype(np.float32), expected.astype(np.float32))


REPO = Path(__file__).resolve().parent.parent
WORKER = """
import hashlib, json, os, sys
import numpy as np
import kfkit.components.train.train as t

real_strategy, real_build, real_make = t.strategy_from_env, t.build_model, t.make_dataset
built = []


def recording_strategy():
    strategy = real_strategy()
    import tensorflow as tf
    print("STRATEGY", "MultiWorkerMirroredStrategy" if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
          else type(strategy).__name__, strategy.num_replicas_in_sync, flush=True)
    return strategy


def recording_build(*args):
    built.append(real_build(*args))
    return built[-1]


def recording_make(path, spec, batch_size, shuffle_seed=None, chunk_rows=65536, share=(0, 1)):
    if path == sys.argv[3]:
        print("SHARE", *share, "ROWS", batch_size, flush=True)
    return real_make(path, spec, batch_size, shuffle_seed, chunk_rows, share)


t.strategy_from_env, t.build_model, t.make_dataset = recording_strategy, recording_build, recording_make
statistics, schema = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
result = t.train(sys.argv[3], sys.argv[4], statistics, schema, "species", sys.argv[5],
                 t.Hyperparameters(epochs=2, seed=7), tensorboard_dir=sys.argv[6], verbose=0)
weights = np.concatenate([w.ravel() for w in built[0].get_weights()])
print("WEIGHTS", hashlib.sha256(weights.tobytes()).hexdigest(), "CHIEF", result.is_chief, flush=True)
"""


def free_ports(count: int) -> list[int]:
    import socket
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_workers(cluster: dict, tasks: list[tuple[str, int]], argv: list[str], tmp_path: Path) -> list[tuple[int, str]]:
    """Each task as its own process, as Vertex runs the same step's container in every pool."""
    import subprocess
    import sys

    workers = []
    for kind, index in tasks:
        scratch = tmp_path / f"tmp-{kind}-{index}"  # the worker's TMPDIR: its scratch must not outlive it
        scratch.mkdir()
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}}),
                   TF_CPP_MIN_LOG_LEVEL="2", TMPDIR=str(scratch))
        workers.append(subprocess.Popen([sys.executable, "-c", WORKER, *argv], env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, cwd=REPO))
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=300)[0])
    finally:
        for worker in workers:
            worker.kill()
    return [(w.returncode, out) for w, out in zip(workers, outputs)]


@pytest.mark.slow
@pytest.mark.parametrize("chief, workers", [(0, 2), (1, 2)], ids=["two-workers", "chief-and-two-workers"])
def test_local_workers_train_one_model_together_from_tf_config(penguin_splits, penguin_validation, tmp_path,
                                                               chief, workers):
    ports = free_ports(chief + workers)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports[chief:]]}
    tasks = [("worker", i) for i in range(workers)]
    if chief:
        cluster["chief"] = [f"127.0.0.1:{ports[0]}"]
        tasks.insert(0, ("chief", 0))
    (tmp_path / "stats.json").write_text(json.dumps(penguin_validation.statistics))
    (tmp_path / "schema.json").write_text(json.dumps(penguin_validation.schema))
    # every worker is handed the same output paths, as the pools of one Vertex CustomJob are
    argv = [str(tmp_path / "stats.json"), str(tmp_path / "schema.json"), str(penguin_splits["train"]),
            str(penguin_splits["eval"]), str(tmp_path / "model"), str(tmp_path / "tensorboard")]

    results = run_workers(cluster, tasks, argv, tmp_path)

    outputs = [out for _, out in results]
    count = len(tasks)
    assert [rc for rc, _ in results] == [0] * count, "\n".join(outputs)[-3000:]
    assert all(f"STRATEGY MultiWorkerMirroredStrategy {count}" in out for out in outputs), outputs[0][-3000:]
    # each its own share of the rows, the global batch of 64 split between them
    shares = sorted(re.search(r"SHARE (\d+) (\d+) ROWS (\d+)", out).groups() for out in outputs)
    assert [(int(i), int(n)) for i, n, _ in shares] == [(i, count) for i in range(count)]
    assert sum(int(rows) for _, _, rows in shares) == 64
    # synchronous data-parallel training: every worker ends with the same weights
    digests = [re.search(r"WEIGHTS (\w+) CHIEF (\w+)", out).groups() for out in outputs]
    assert len({digest for digest, _ in digests}) == 1
    assert [chief for _, chief in digests] == ["True"] + ["False"] * (count - 1)
    # the chief alone wrote the outputs; the others' scratch directories are gone
    test = ds.dataset(penguin_splits["test"]).to_table()
    assert LoadedModel(tmp_path / "model").predict_table(test)["scores"].shape == (test.num_rows, 3)
    assert any((tmp_path / "tensorboard").iterdir())
    assert all(leftovers(tmp_path / f"tmp-{kind}-{index}") == [] for kind, index in tasks)


RESUMING = """
import hashlib, json, os, sys
import keras
import numpy as np
import kfkit.components.train.train as t

real_build = t.build_model
built = []
t.build_model = lambda *args: built.append(real_build(*args)) or built[-1]


class Preempted(keras.callbacks.Callback):
    \"\"\"The machine goes away right after an epoch's backup: no cleanup, no exception handling.\"\"\"
    def on_epoch_end(self, epoch, logs=None):
        if epoch == int(sys.argv[5]):
            os._exit(75)


statistics, schema = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
result = t.train(sys.argv[3], sys.argv[4], statistics, schema, "species", None,
                 t.Hyperparameters(epochs=4, seed=5, patience=10), checkpoint_dir=sys.argv[6],
                 callbacks=[Preempted()], verbose=0)
weights = np.concatenate([w.ravel() for w in built[0].get_weights()])
print("RESUMED", result.resumed_epoch, "EPOCHS", result.epochs_run, "TRAINED", len(result.history["loss"]))
print("WEIGHTS", hashlib.sha256(weights.tobytes()).hexdigest(), flush=True)
"""


@pytest.mark.slow
def test_a_worker_killed_after_an_epoch_resumes_from_its_backup(penguin_splits, penguin_validation, tmp_path):
    import subprocess
    import sys

    (tmp_path / "stats.json").write_text(json.dumps(penguin_validation.statistics))
    (tmp_path / "schema.json").write_text(json.dumps(penguin_validation.schema))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)

    def run(kill_after_epoch: int, checkpoints: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", RESUMING, str(tmp_path / "stats.json"), str(tmp_path / "schema.json"),
             str(penguin_splits["train"]), str(penguin_splits["eval"]), str(kill_after_epoch), str(checkpoints)],
            env=env, capture_output=True, text=True, cwd=REPO, timeout=300)

    killed = run(1, tmp_path / "checkpoints")  # dies at the end of its second epoch (index 1)
    backup = json.loads((tmp_path / "checkpoints" / "training_metadata.json").read_text())
    restarted = run(-1, tmp_path / "checkpoints")
    uninterrupted = run(-1, tmp_path / "other-checkpoints")

    assert killed.returncode == 75, killed.stdout + killed.stderr[-3000:]
    assert backup["epoch"] == 2
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    assert "RESUMED 2 EPOCHS 4 TRAINED 2" in restarted.stdout
    assert "RESUMED 0 EPOCHS 4 TRAINED 4" in uninterrupted.stdout
    # the optimizer's state came back too: the same weights as a run that was never interrupted
    assert re.search(r"WEIGHTS (\w+)", restarted.stdout)[1] == re.search(r"WEIGHTS (\w+)", uninterrupted.stdout)[1]
    assert not (tmp_path / "checkpoints").exists()  # removed once training ended
