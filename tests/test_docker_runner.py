"""`kfkit run --runner docker`: what every step's container gets, and the refusals before any step runs.

The runs themselves, in the real images on a real engine, are in tests/test_containers.py.
"""

import os
import subprocess
import sys

import pytest

from kfkit.runs import docker_runner
from kfkit.config import runtime_image, trainer_image
from kfkit.errors import KfkitError


def test_training_pipeline_steps_name_the_runtime_and_trainer_images_of_this_version():
    from kfkit import pipelines

    images = docker_runner.step_images(pipelines.load("training"))

    assert sorted(images) == sorted([runtime_image(), trainer_image()])


def test_every_container_gets_the_local_root_at_its_own_path_and_the_callers_ids(tmp_path):
    settings = docker_runner.container_settings(tmp_path, environ={})

    [mount] = settings["mounts"]
    assert (mount["Source"], mount["Target"], mount["Type"]) == (str(tmp_path), str(tmp_path), "bind")
    assert settings["user"] == f"{os.getuid()}:{os.getgid()}"
    assert settings["environment"] == {"KFKIT_LOCAL_ROOT": str(tmp_path), "HOME": "/tmp"}
    assert "network_mode" not in settings  # nothing to reach: the steps keep their own network


def test_registry_settings_pass_into_the_containers_and_a_tracking_server_brings_the_hosts_network(tmp_path):
    environ = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000", "MLFLOW_TRACKING_TOKEN": "t",
               "KFKIT_IMAGE_TAG": "0.5.0", "KFKIT_LOCAL_ROOT": "/elsewhere", "AWS_SECRET_ACCESS_KEY": "s", "PATH": "/x"}

    settings = docker_runner.container_settings(tmp_path, environ=environ)

    assert settings["environment"] == {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000", "MLFLOW_TRACKING_TOKEN": "t",
                                       "KFKIT_IMAGE_TAG": "0.5.0", "KFKIT_LOCAL_ROOT": str(tmp_path), "HOME": "/tmp"}
    assert settings["network_mode"] == "host"


def test_a_tracking_uri_that_is_not_a_server_keeps_the_steps_off_the_hosts_network(tmp_path):
    settings = docker_runner.container_settings(tmp_path, environ={"MLFLOW_TRACKING_URI": "sqlite:////x/mlflow.db"})

    assert "network_mode" not in settings


def test_no_engine_is_refused_naming_docker_host_and_how_to_start_one(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")

    with pytest.raises(KfkitError) as raised:
        docker_runner.engine()

    assert f"no Docker engine answers at unix://{tmp_path}/no-such.sock" in str(raised.value)
    assert "containers/local-engine.sh start" in str(raised.value)


class Images:
    """The one part of a docker client check_images uses: images present by name."""

    def __init__(self, present):
        self.present = present

    def get(self, name):
        import docker

        if name not in self.present:
            raise docker.errors.ImageNotFound(f"No such image: {name}")
        return name


class Client:
    def __init__(self, present):
        self.images = Images(present)


def test_missing_images_are_refused_by_name_with_the_commands_that_build_them():
    client = Client({"ghcr.io/kfkit/kfkit-runtime:0.5.0"})

    with pytest.raises(KfkitError) as raised:
        docker_runner.check_images(client, ["ghcr.io/kfkit/kfkit-runtime:0.5.0", "ghcr.io/kfkit/kfkit-trainer:0.5.0"])

    message = str(raised.value)
    assert "lacks 1 image(s) this pipeline's steps run in: ghcr.io/kfkit/kfkit-trainer:0.5.0." in message
    assert "PUSH=false ci/build-image.sh trainer ghcr.io/kfkit 0.5.0" in message
    assert "kfkit-runtime" not in message.split("run in:")[1].split(". ")[0]


def test_images_all_present_pass():
    images = ["r.example/kfkit-runtime:1", "r.example/kfkit-trainer:1"]

    assert docker_runner.check_images(Client(set(images)), images) is None


def test_an_unknown_runner_is_refused_before_anything_runs(tmp_path):
    from kfkit.runs.local import run_local

    with pytest.raises(KfkitError, match="runner must be one of subprocess, docker, got 'kubernetes'"):
        run_local("training", {}, str(tmp_path), runner="kubernetes")

    assert not (tmp_path / "runs").exists()


def test_cli_docker_runner_without_an_engine_exits_1_with_the_reason_and_writes_no_run(tmp_path):
    env = dict(os.environ, DOCKER_HOST=f"unix://{tmp_path}/no-such.sock")

    done = subprocess.run([sys.executable, "-m", "kfkit.cli", "run", "training", "--local", "--runner", "docker",
                           "--local-root", str(tmp_path / "root")], env=env, capture_output=True, text=True,
                          timeout=120)

    assert done.returncode == 1, done.stdout + done.stderr
    assert "no Docker engine answers at" in done.stderr
    assert not list((tmp_path / "root" / "runs").glob("kfkit-training-*"))
