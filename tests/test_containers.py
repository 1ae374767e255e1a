"""The images, built and run for real (marked `docker`: skip locally with -m "not docker").

A Docker engine is started with containers/local-engine.sh when none answers; CI runs these.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from kfkit import __version__

REPO = Path(__file__).resolve().parent.parent
# KFKIT_TEST_IMAGES=REGISTRY:TAG tests images a build already made (Cloud Build, before pushing them)
REGISTRY, TAG = (os.environ["KFKIT_TEST_IMAGES"].rsplit(":", 1) if os.environ.get("KFKIT_TEST_IMAGES")
                 else ("ghcr.io/kfkit", __version__))
IMAGES = ["runtime", "trainer", "serving"]
pytestmark = [pytest.mark.docker, pytest.mark.slow]


def docker(*args, check=True, **kwargs):
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, **kwargs)


@pytest.fixture(scope="session")
def engine():
    started = False
    if docker("info", check=False).returncode != 0:
        done = subprocess.run([str(REPO / "containers" / "local-engine.sh"), "start"], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        os.environ["DOCKER_HOST"] = "unix://" + os.environ.get("KFKIT_DOCKER_STATE", "/tmp/kfkit-docker") + "/docker.sock"
        started = True
    yield
    if started:
        subprocess.run([str(REPO / "containers" / "local-engine.sh"), "stop"], capture_output=True)


@pytest.fixture(scope="session")
def images(engine):
    if os.environ.get("KFKIT_TEST_IMAGES"):
        for name in IMAGES:
            assert docker("image", "inspect", f"{REGISTRY}/kfkit-{name}:{TAG}", check=False).returncode == 0, name
        return {name: f"{REGISTRY}/kfkit-{name}:{TAG}" for name in IMAGES}
    for name in IMAGES:  # in order: serving builds on the trainer
        done = subprocess.run([str(REPO / "ci" / "build-image.sh"), name, REGISTRY, TAG], capture_output=True, text=True,
                              env=dict(os.environ, PUSH="false"), cwd=REPO)
        assert done.returncode == 0, f"building {name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return {name: f"{REGISTRY}/kfkit-{name}:{TAG}" for name in IMAGES}


@pytest.mark.parametrize("name", IMAGES)
def test_every_image_builds_and_runs_as_a_non_root_user(images, name):
    assert docker("run", "--rm", "--entrypoint", "id", images[name], "-u").stdout.strip() == "1000"


def test_trainer_image_has_tensorflow_and_kfkit(images):
    out = docker("run", "--rm", "--entrypoint", "python3", images["trainer"], "-c",
                 "import tensorflow as tf, kfkit; print(tf.__version__, kfkit.__version__)").stdout.split()
    assert out == ["2.21.0", __version__]


def test_runtime_image_runs_ingest_and_validate_with_the_docker_runner(images, tmp_path):
    from kfp import dsl, local

    from kfkit.components.ingest.component import bigquery_query_to_dataset
    from kfkit.components.validate.component import validate_data

    runs = tmp_path / "runs"
    runs.mkdir()
    os.chmod(tmp_path, 0o777)
    os.chmod(runs, 0o777)  # the containers write as uid 1000
    state = runs / "kfkit-state"

    @dsl.pipeline(name="docker-ingest-validate")
    def ingest_validate():
        data = bigquery_query_to_dataset(
            query="SELECT * FROM `bigquery-public-data.ml_datasets.penguins` WHERE body_mass_g IS NOT NULL",
            label_column="species", local_root=str(state))
        validate_data(train_data=data.outputs["train_data"], eval_data=data.outputs["eval_data"],
                      test_data=data.outputs["test_data"], label_column="species")

    local.init(runner=local.DockerRunner(), pipeline_root=str(runs), raise_on_error=True)
    ingest_validate()

    [run] = [p for p in runs.iterdir() if p.name.startswith("docker-ingest-validate")]
    stats = json.loads((run / "validate-data" / "statistics").read_text())
    assert stats["rows"] > 200 and stats["label"] == "species"


def test_serving_image_answers_health_and_predict_on_a_published_port(images, penguin_model, tmp_path):
    model = tmp_path / "model"
    subprocess.run(["cp", "-r", str(penguin_model), str(model)], check=True)
    subprocess.run(["chmod", "-R", "a+rX", str(tmp_path)], check=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    container = docker("run", "-d", "--rm", "-p", f"127.0.0.1:{port}:8080", "-v", f"{model}:/model:ro",
                       "-e", "AIP_STORAGE_URI=/model", "-e", "AIP_PREDICT_ROUTE=/v1/predict",
                       images["serving"]).stdout.strip()
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, docker("logs", container, check=False).stdout[-2000:]
                time.sleep(0.5)
        body = json.dumps({"instances": [{"island": "Biscoe", "culmen_length_mm": 47.5, "culmen_depth_mm": 15.0,
                                          "flipper_length_mm": 218.0, "body_mass_g": 4950.0, "sex": "FEMALE"}]})
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/predict", data=body.encode(), method="POST")
        with urllib.request.urlopen(request, timeout=30) as r:
            answer = json.loads(r.read())
        assert answer["predictions"][0]["classes"] == "Gentoo penguin (Pygoscelis papua)"
        assert "deployedModelId" in answer
        health = json.loads(docker("inspect", "--format", "{{json .Config.Healthcheck}}", images["serving"]).stdout)
        assert "AIP_HEALTH_ROUTE" in " ".join(health["Test"])
        # Vertex (and Kubernetes) stop a server with SIGTERM, then SIGKILL after the grace period: the
        # server, PID 1 here, drains and exits 0 on SIGTERM; ignoring it would end as 137 (killed)
        waiter = subprocess.Popen(["docker", "wait", container], stdout=subprocess.PIPE, text=True)
        docker("stop", "--time", "60", container)
        assert waiter.communicate(timeout=120)[0].strip() == "0"
    finally:
        docker("rm", "-f", container, check=False)


def run_training_cli(root, *args, env=None):
    images = {"KFKIT_IMAGE_REGISTRY": REGISTRY, "KFKIT_IMAGE_TAG": TAG}  # the steps' images: the ones tested
    return subprocess.run([sys.executable, "-m", "kfkit.cli", "run", "training", "--local", "--local-root", str(root),
                           "--param", "epochs=5", *args], capture_output=True, text=True, timeout=900,
                          env={**os.environ, **images, **(env or {})})


def summary_of(root) -> dict:
    [run] = (Path(root) / "runs").glob("kfkit-training-*")
    return json.loads((run / "summary.json").read_text())


def split_rows(root, name) -> list[dict]:
    import pyarrow.parquet as pq

    [run] = (Path(root) / "runs").glob("kfkit-training-*")
    table = pq.read_table(run / "bigquery-query-to-dataset" / f"{name}_data")
    return sorted(table.to_pylist(), key=lambda row: json.dumps(row, sort_keys=True, default=str))


def test_training_pipeline_in_the_images_has_the_subprocess_runs_outcome(images, tmp_path):
    here, boxed = tmp_path / "subprocess", tmp_path / "docker"

    plain = run_training_cli(here)
    docked = run_training_cli(boxed, "--runner", "docker")

    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert docked.returncode == 0, docked.stdout + docked.stderr
    expected, got = summary_of(here), summary_of(boxed)
    assert got["decision"] == expected["decision"] == "BLESSED"
    assert got["lines"][0] == expected["lines"][0]  # "Data: snapshot <id>; rows train ..., eval ..., test ..."
    for split in ("train", "eval", "test"):
        assert split_rows(boxed, split) == split_rows(here, split)
    assert "Registered models:/penguins/1 (version 1; aliases challenger, champion)" in got["lines"]
    endpoint = json.loads((boxed / "endpoints" / "penguins.json").read_text())
    [deployed] = endpoint["deployed_models"]
    assert deployed["traffic"] == 100 and Path(deployed["model_dir"], "saved_model.pb").is_file()
    [run] = (boxed / "runs").glob("kfkit-training-*")
    log = (run / "logs" / "run.log").read_text()
    assert f"Found image '{images['trainer']}'" in log and f"Found image '{images['runtime']}'" in log
    # what the containers wrote is the caller's, as if a subprocess had written it
    assert {p.stat().st_uid for p in boxed.rglob("*")} == {os.getuid()}


def test_training_pipeline_in_the_images_registers_through_an_mlflow_server(images, mlflow_server, tmp_path):
    from mlflow import MlflowClient

    done = run_training_cli(tmp_path, "--runner", "docker", "--param", "model_name=boxed-penguins",
                            env={"MLFLOW_TRACKING_URI": mlflow_server})

    assert done.returncode == 0, done.stdout + done.stderr
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    assert client.get_model_version_by_alias("boxed-penguins", "champion").version == "1"
    assert not (tmp_path / "mlflow.db").exists()  # the steps registered on the server, not beside themselves


def test_docker_runner_refuses_images_the_engine_lacks_before_any_step(engine, tmp_path):
    done = run_training_cli(tmp_path, "--runner", "docker", env={"KFKIT_IMAGE_TAG": "0.0.0-never-built"})

    assert done.returncode == 1
    assert f"{REGISTRY}/kfkit-trainer:0.0.0-never-built" in done.stderr
    assert f"ci/build-image.sh runtime {REGISTRY} 0.0.0-never-built" in done.stderr
    assert not list((tmp_path / "runs").glob("kfkit-training-*"))


@pytest.fixture(scope="session")
def host_gpu():
    import shutil

    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True) if shutil.which("nvidia-smi") else None
    if listed is None or listed.returncode != 0 or "GPU" not in listed.stdout:
        pytest.skip("no NVIDIA GPU here (nvidia-smi -L lists none): the GPU trainer image is built and run only where "
                    "one is; its device check runs on the CPU in tests/test_train.py")


@pytest.mark.gpu
def test_gpu_trainer_image_sees_the_gpu_and_trains_an_epoch_on_it(host_gpu, images, penguin_splits,
                                                                  penguin_validation, tmp_path):
    done = subprocess.run([str(REPO / "ci" / "build-image.sh"), "trainer-gpu", REGISTRY, TAG], capture_output=True,
                          text=True, env=dict(os.environ, PUSH="false"), cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (tmp_path / "statistics.json").write_text(json.dumps(penguin_validation.statistics))
    (tmp_path / "schema.json").write_text(json.dumps(penguin_validation.schema))
    script = ("import json; from kfkit.components.train.train import Hyperparameters, accelerators, train\n"
              "gpus = accelerators(); assert gpus, 'TensorFlow sees no GPU'\n"
              "r = train('/data/train', '/data/eval', json.load(open('/work/statistics.json')), "
              "json.load(open('/work/schema.json')), 'species', '/work/model', Hyperparameters(epochs=1))\n"
              "print('GPUS', *gpus); print('EPOCHS', r.epochs)")
    os.chmod(tmp_path, 0o777)

    ran = docker("run", "--rm", "--gpus", "all", "-v", f"{tmp_path}:/work", "-v", f"{penguin_splits['train']}:/data/train:ro",
                 "-v", f"{penguin_splits['eval']}:/data/eval:ro", "--entrypoint", "python3",
                 f"{REGISTRY}/kfkit-trainer-gpu:{TAG}", "-c", script, check=False)

    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-3000:]
    assert "GPUS /physical_device:GPU:0" in ran.stdout and "EPOCHS 1" in ran.stdout
