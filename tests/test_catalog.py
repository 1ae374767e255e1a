import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kfkit import __version__, catalog
from tests.test_pipelines import vertex_job

REPO = Path(__file__).resolve().parent.parent


def test_committed_component_specs_docs_and_lock_match_the_code():
    assert catalog.check() == []


def test_each_spec_names_the_kfkit_version_image_and_interface():
    head = (REPO / "components" / "train" / "component.yaml").read_text().splitlines()[:4]
    assert head[1] == f"# kfkit-version: {__version__}"
    assert head[2] == f"# image: ghcr.io/kfkit/kfkit-trainer:{__version__}"
    assert head[3].startswith("# interface: ")


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
