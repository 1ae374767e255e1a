import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kfkit import __version__, catalog, interfaces
from tests.test_pipelines import vertex_job

REPO = Path(__file__).resolve().parent.parent


def test_committed_component_specs_docs_and_lock_match_the_code():
    assert catalog.check() == []


def test_each_spec_names_the_kfkit_version_image_and_interface():
    head = (REPO / "components" / "train" / "component.yaml").read_text().splitlines()[:4]
    assert head[1] == f"# kfkit-version: {__version__}"
    assert head[2] == f"# image: ghcr.io/kfkit/kfkit-trainer:{__version__}"
    assert head[3].startswith("# interface: ")


def test_version_and_interface_travel_in_container_arguments_into_pipelines_built_from_the_specs(tmp_path):
    from kfp import compiler, components, dsl

    lock = yaml.safe_load((REPO / "components" / "interfaces.lock.json").read_text())
    validate = components.load_component_from_file(str(REPO / "components" / "validate" / "component.yaml"))

    @dsl.pipeline(name="reuses-validate")
    def reuses():
        train = dsl.importer(artifact_uri="gs://b/train", artifact_class=dsl.Dataset).output
        validate(train_data=train, eval_data=train, test_data=train, label_column="species")

    compiler.Compiler().compile(reuses, str(tmp_path / "p.yaml"))
    executors = yaml.safe_load((tmp_path / "p.yaml").read_text())["deploymentSpec"]["executors"]
    args = executors["exec-validate-data"]["container"]["args"]
    assert args[-4:] == ["--kfkit-version", __version__, "--kfkit-interface", lock["validate"]["interface"]]
    assert args[:4] == ["--executor_input", "{{$}}", "--function_to_execute", "validate_data"]


def test_a_component_stamped_twice_keeps_one_stamp():
    from kfkit.components.train.component import train_tensorflow_model

    args = list(interfaces.stamped(train_tensorflow_model).component_spec.implementation.container.args)
    assert args.count("--kfkit-version") == 1 and args.count("--kfkit-interface") == 1


def test_interface_change_without_a_version_bump_is_refused():
    previous = {"ingest": {"version": "0.1.0", "interface": "aaaa"}}
    assert "bump the version" in catalog.version_problems(previous, {"ingest": {"version": "0.1.0", "interface": "bbbb"}})[0]
    assert catalog.version_problems(previous, {"ingest": {"version": "0.2.0", "interface": "bbbb"}}) == []


def test_specs_load_with_kfp_alone():
    from kfp import components

    ingest = components.load_component_from_file(str(REPO / "components" / "ingest" / "component.yaml"))
    assert set(ingest.component_spec.outputs) == {"train_data", "eval_data", "test_data", "destination_table",
                                                  "gcp_resources", "Output"}


def test_example_reusing_googles_batch_predict_compiles_and_passes_vertex_validation(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "examples" / "reuse_with_gcpc.py")], cwd=tmp_path,
                          capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert done.returncode == 0, done.stderr
    template = tmp_path / "reuse_with_gcpc.yaml"
    spec = yaml.safe_load(template.read_text())
    batch = spec["components"]["comp-model-batch-predict"]["inputDefinitions"]["artifacts"]["model"]
    assert batch["artifactType"]["schemaTitle"] == "google.VertexModel"
    vertex_job(template, {"project": "kfkit-test"})


@pytest.mark.slow
def test_example_built_from_yaml_specs_runs_locally(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "examples" / "from_yaml_specs.py"), str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    [run] = (tmp_path / "runs").iterdir()
    assert (run / "validate-data" / "statistics").exists()
