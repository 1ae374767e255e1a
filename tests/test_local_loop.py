"""What keeps the local loop short: scoring without Keras's import, and steps that end once their
outputs are written (benchmarks/pipeline.py measures both)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from kfp import dsl, local
from kfp.dsl import OutputPath


REPO = Path(__file__).resolve().parent.parent

PREDICT = """
import json, sys
{before}
import pyarrow.dataset as ds
from kfkit.serving.model_io import LoadedModel
model = LoadedModel(sys.argv[1])
scores = model.predict_table(ds.dataset(sys.argv[2]).to_table())["scores"]
print(json.dumps({{"scores": scores.tolist(), "keras": "keras" in sys.modules}}))
"""


def predict_in_process(model_dir: Path, test_dir: Path, before: str = "") -> dict:
    done = subprocess.run([sys.executable, "-c", PREDICT.format(before=before), str(model_dir), str(test_dir)],
                          capture_output=True, text=True, cwd=REPO, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_scoring_skips_keras_and_predicts_exactly_as_with_keras_loaded(penguin_model, penguin_splits):
    # the reference: TensorFlow imported the usual way, Keras and all
    reference = predict_in_process(penguin_model, penguin_splits["test"], before="import tensorflow, keras")

    scored = predict_in_process(penguin_model, penguin_splits["test"])

    assert reference["keras"] is True
    assert scored["keras"] is False
    assert scored["scores"] == reference["scores"]


def test_keras_still_imports_after_scoring_tensorflow_was_loaded(penguin_model):
    code = ("from kfkit.serving.model_io import tensorflow_runtime\n"
            "tf = tensorflow_runtime()\n"
            "print(tf.keras.layers.Dense(2).units)")

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)

    assert done.stdout.strip().splitlines()[-1] == "2"


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def succeeds_quickly(marker: str, out: OutputPath(str)):
    import atexit

    from kfkit import quick_exit

    # registered before the quick exit, so it runs after it: skipped when the exit is quick
    atexit.register(lambda: open(marker, "w").write("teardown ran"))
    with open(out, "w") as handle:
        handle.write("done")
    assert quick_exit.after_success()


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def arms_then_raises(out: OutputPath(str)):
    from kfkit import quick_exit

    quick_exit.after_success()
    raise ValueError("the step failed after arming the quick exit")


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def arms_then_exits_3(out: OutputPath(str)):
    import sys

    from kfkit import quick_exit

    quick_exit.after_success()
    sys.exit(3)


def run_locally(tmp_path: Path) -> None:
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "runs"),
               raise_on_error=True)


def test_a_step_that_succeeded_exits_without_the_libraries_teardown(tmp_path):
    run_locally(tmp_path)
    marker = tmp_path / "teardown"

    task = succeeds_quickly(marker=str(marker))

    assert task.output == "done"
    assert not marker.exists()


@pytest.mark.parametrize("component", [arms_then_raises, arms_then_exits_3], ids=["exception", "sys.exit(3)"])
def test_a_step_that_failed_after_arming_still_fails(tmp_path, component):
    run_locally(tmp_path)

    with pytest.raises(RuntimeError, match="FAILURE"):
        component()


def test_the_quick_exit_stays_off_outside_kfps_executor(tmp_path):
    marker = tmp_path / "teardown"
    code = ("import atexit, sys\n"
            "atexit.register(lambda: open(sys.argv[1], 'w').write('teardown ran'))\n"
            "from kfkit import quick_exit\n"
            "print(quick_exit.after_success())")

    done = subprocess.run([sys.executable, "-c", code, str(marker)], capture_output=True, text=True, cwd=REPO,
                          check=True)

    assert done.stdout.strip() == "False"
    assert marker.read_text() == "teardown ran"
