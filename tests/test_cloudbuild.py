"""cloudbuild.yaml and the triggers: valid for Cloud Build's own message types, every substitution
declared, every script present, and the steps that need no Docker run here in a temp checkout."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from google.cloud.devtools import cloudbuild_v1

REPO = Path(__file__).resolve().parent.parent
BUILDS = ["cloudbuild.yaml", "cloudbuild-pr.yaml"]
BUILT_IN = {"PROJECT_ID", "SHORT_SHA", "BRANCH_NAME", "COMMIT_SHA", "BUILD_ID", "LOCATION", "PROJECT_NUMBER"}


def load(name):
    return yaml.safe_load((REPO / name).read_text())


@pytest.mark.parametrize("name", BUILDS)
def test_build_config_loads_into_cloud_builds_message_without_unknown_fields(name):
    build = cloudbuild_v1.Build.from_json(json.dumps(load(name)), ignore_unknown_fields=False)
    assert build.steps and build.timeout.total_seconds() > 0
    assert build.options.machine_type and build.options.logging


@pytest.mark.parametrize("name", BUILDS)
def test_every_substitution_used_is_declared_or_built_in(name):
    config = load(name)
    text = (REPO / name).read_text()
    used = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)\}?", text))
    declared = set(config.get("substitutions", {}))
    assert used - declared - BUILT_IN == set()
    assert all(key.startswith("_") for key in declared)


@pytest.mark.parametrize("name", BUILDS)
def test_steps_have_ids_wait_for_known_steps_and_call_executable_scripts(name):
    steps = load(name)["steps"]
    ids = [s["id"] for s in steps]
    assert len(ids) == len(set(ids))
    for step in steps:
        assert set(step.get("waitFor", [])) <= set(ids) | {"-"}
        for script in re.findall(r"ci/[\w./-]+\.sh", " ".join(step["args"])):
            assert os.access(REPO / script, os.X_OK), script


def test_independent_steps_run_in_parallel():
    steps = {s["id"]: s for s in load("cloudbuild.yaml")["steps"]}
    assert steps["build-runtime"]["waitFor"] == ["-"] and steps["install-and-lint"]["waitFor"] == ["-"]
    assert steps["compile"]["waitFor"] == ["install-and-lint"]


@pytest.mark.parametrize("trigger, build", [("ci/triggers/main.yaml", "cloudbuild.yaml"),
                                            ("ci/triggers/pull-request.yaml", "cloudbuild-pr.yaml")])
def test_triggers_import_as_build_triggers(trigger, build):
    parsed = cloudbuild_v1.BuildTrigger.from_json(json.dumps(load(trigger)), ignore_unknown_fields=False)
    assert parsed.filename == build and (REPO / build).exists()


def test_pull_requests_run_tests_only():
    ids = [s["id"] for s in load("cloudbuild-pr.yaml")["steps"]]
    assert ids == ["install-and-lint", "test"]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """The working tree's files (tracked and new, not ignored) in a temporary directory."""
    target = tmp_path_factory.mktemp("checkout")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    return target


def run_step(checkout, *command, **env):
    venv = Path(os.environ.get("VIRTUAL_ENV") or Path(os.sys.executable).parent.parent)
    full_env = dict(os.environ, VENV=str(venv), PYTHONPATH=str(checkout), **env)
    return subprocess.run(list(command), cwd=checkout, capture_output=True, text=True, env=full_env)


def test_lint_step_runs_in_a_checkout(checkout):
    done = run_step(checkout, "ci/lint.sh")
    assert done.returncode == 0, done.stdout + done.stderr


def test_compile_and_publish_steps_run_in_a_checkout(checkout):
    done = run_step(checkout, "ci/compile.sh", "europe-docker.pkg.dev/p/kfkit", "abc1234", "build")
    assert done.returncode == 0, done.stderr
    spec = (checkout / "build" / "pipelines" / "training.yaml").read_text()
    assert "europe-docker.pkg.dev/p/kfkit/kfkit-trainer:abc1234" in spec
    published = run_step(checkout, "ci/publish-templates.sh", "https://europe-kfp.pkg.dev/p/kfkit-pipelines",
                         "abc1234", "feature/x", "build", DRY_RUN="true")
    assert published.returncode == 0, published.stderr
    assert "training.yaml to https://europe-kfp.pkg.dev/p/kfkit-pipelines with tags abc1234, feature-x" in published.stdout


def test_run_pipeline_step_does_nothing_unless_asked(checkout):
    done = run_step(checkout, "ci/run-pipeline.sh", "p", "us-central1", "gs://b/r", "sa@p.iam.gserviceaccount.com",
                    RUN_PIPELINE="false")
    assert done.returncode == 0 and "not submitting" in done.stdout


def test_publish_uploads_each_template_with_commit_and_branch_tags(tmp_path):
    from kfkit import publish

    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "training.yaml").write_text("x")

    class Registry:
        uploads = []

        def upload_pipeline(self, file_name, tags, extra_headers):
            Registry.uploads.append((Path(file_name).name, tags))
            return "kfkit-training/sha256:1"

    assert publish.main(["--host", "https://us-kfp.pkg.dev/p/r", "--tag", "abc", "--tag", "release/1.0",
                         "--build-dir", str(tmp_path)], client=Registry()) == 0
    assert Registry.uploads == [("training.yaml", ["abc", "release-1.0"])]
