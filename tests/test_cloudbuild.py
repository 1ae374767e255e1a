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
BUILDS = ["cloudbuild.yaml", "cloudbuild-pr.yaml", "cloudbuild-release.yaml", "cloudbuild-promote.yaml",
          "cloudbuild-e2e.yaml"]
BUILT_IN = {"PROJECT_ID", "SHORT_SHA", "BRANCH_NAME", "COMMIT_SHA", "BUILD_ID", "LOCATION", "PROJECT_NUMBER", "TAG_NAME"}
TRIGGERS = {"ci/triggers/main.yaml": "cloudbuild.yaml", "ci/triggers/pull-request.yaml": "cloudbuild-pr.yaml",
            "ci/triggers/release.yaml": "cloudbuild-release.yaml", "ci/triggers/promote.yaml": "cloudbuild-promote.yaml",
            "ci/triggers/e2e.yaml": "cloudbuild-e2e.yaml"}


def load(name):
    return yaml.safe_load((REPO / name).read_text())


@pytest.mark.parametrize("name", BUILDS)
def test_build_config_loads_into_cloud_builds_message_without_unknown_fields(name):
    build = cloudbuild_v1.Build.from_json(json.dumps(load(name)), ignore_unknown_fields=False)
    assert build.steps and build.timeout.total_seconds() > 0
    # a trigger running as its own service account must send logs to Cloud Logging only
    assert build.options.logging == cloudbuild_v1.BuildOptions.LoggingMode.CLOUD_LOGGING_ONLY


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
    assert steps["build-trainer"]["waitFor"] == ["-"]  # its own dependency stage: no longer FROM the runtime
    assert steps["compile"]["waitFor"] == ["install-and-lint"]


@pytest.mark.parametrize("trigger, build", sorted(TRIGGERS.items()))
def test_triggers_import_as_build_triggers_running_as_a_named_service_account(trigger, build):
    parsed = cloudbuild_v1.BuildTrigger.from_json(json.dumps(load(trigger)), ignore_unknown_fields=False)

    assert (parsed.filename or parsed.git_file_source.path) == build and (REPO / build).exists()
    account = re.fullmatch(r"projects/PROJECT_ID/serviceAccounts/(kfkit-ci-[a-z0-9-]+)@PROJECT_ID\.iam\.gserviceaccount\.com",
                           parsed.service_account)
    assert account, parsed.service_account  # never the default Cloud Build service account
    assert f"`{account[1]}`" in (REPO / "docs" / "ci.md").read_text()  # its roles are documented


def published_images(name):
    return [i for i in load(name).get("images", [])]


@pytest.mark.parametrize("name, tag", [("cloudbuild.yaml", "${SHORT_SHA}"), ("cloudbuild-release.yaml", "${TAG_NAME}")])
def test_images_are_pushed_by_cloud_build_with_provenance_only_after_their_tests_and_scan(name, tag):
    config = load(name)
    steps = {s["id"]: s for s in config["steps"]}

    assert published_images(name) == [f"${{_REGION}}-docker.pkg.dev/${{PROJECT_ID}}/${{_REPOSITORY}}/kfkit-{i}:{tag}"
                                      for i in ("runtime", "trainer", "serving")]
    assert config["options"]["requestedVerifyOption"] == "VERIFIED"
    assert {"build-serving", "build-runtime"} <= set(steps["test-images"]["waitFor"])
    assert steps["scan-images"]["args"][0] == "ci/scan-images.sh" and len(steps["scan-images"]["args"]) == 4
    text = (REPO / name).read_text()
    assert "docker push" not in text and "--push" not in text and "PUSH=" not in text


def test_templates_are_published_only_after_the_images_passed_their_tests_and_scan():
    steps = {s["id"]: s for s in load("cloudbuild.yaml")["steps"]}

    assert {"test", "test-images", "scan-images", "compile"} <= set(steps["publish-templates"]["waitFor"])


def test_pull_requests_build_and_test_the_images_and_push_nothing():
    config = load("cloudbuild-pr.yaml")
    steps = {s["id"]: s for s in config["steps"]}

    assert list(steps) == ["install-and-lint", "test", "build-runtime", "build-trainer", "build-serving", "test-images"]
    assert "images" not in config
    assert all(s.get("env") == ["BUILD_CACHE=registry-read"] for i, s in steps.items() if i in ("build-runtime", "build-trainer"))


def test_the_main_build_runs_no_pipeline_and_the_e2e_build_waits_for_its_run():
    assert not any("run-pipeline" in s["id"] for s in load("cloudbuild.yaml")["steps"])
    [run] = [s for s in load("cloudbuild-e2e.yaml")["steps"] if s["id"] == "run-pipeline"]

    assert "RUN_PIPELINE=true" in run["env"]
    assert "--wait" in (REPO / "ci" / "run-pipeline.sh").read_text()


def test_a_release_builds_only_from_a_version_tag_that_names_pyprojects_version(checkout):
    pattern = load("ci/triggers/release.yaml")["github"]["push"]["tag"]
    from kfkit import __version__

    assert [t for t in ("v0.6.0", "v10.2.33", "v0.6", "0.6.0", "v0.6.0-rc1") if re.fullmatch(pattern, t)] == [
        "v0.6.0", "v10.2.33"]
    assert load("cloudbuild-release.yaml")["steps"][0]["args"] == ["ci/release-version.sh", "${TAG_NAME}"]
    right = run_step(checkout, "ci/release-version.sh", f"v{__version__}")
    wrong = run_step(checkout, "ci/release-version.sh", "v0.0.1")
    assert right.returncode == 0 and wrong.returncode == 1
    assert f"tag v0.0.1 does not release this commit's kfkit {__version__}" in wrong.stderr


def test_promotion_needs_an_approval_and_pins_the_templates_to_digests():
    trigger = load("ci/triggers/promote.yaml")
    steps = {s["id"]: s for s in load("cloudbuild-promote.yaml")["steps"]}

    assert trigger["approvalConfig"] == {"approvalRequired": True}
    assert "ci/image-digests.sh" in steps["digests"]["args"][1]
    assert steps["compile"]["args"][1].endswith("build digests.json")
    assert steps["tag-stable"]["args"][0] == "ci/promote.sh"


def fake_gcloud(tmp_path, vulnerabilities: dict[str, str]):
    """A gcloud on PATH answering on-demand scanning as the real one prints with these --format values."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cases = "\n".join(f"    *'scan {image} '*) echo 'projects/p/locations/us/scans/{i}' ;;" for i, image in
                       enumerate(vulnerabilities))
    findings = "\n".join(f"    *'projects/p/locations/us/scans/{i} '*) printf '{found}' ;;" for i, found in
                          enumerate(vulnerabilities.values()))
    script = bin_dir / "gcloud"
    script.write_text("#!/usr/bin/env bash\nargs=\"$* \"\ncase \"$args\" in\n" + cases + "\n" + findings
                      + "\n    *) echo \"unexpected: $args\" >&2; exit 9 ;;\nesac\n")
    script.chmod(0o755)
    return bin_dir


def test_the_scan_gate_fails_on_a_critical_vulnerability_naming_image_and_note(tmp_path, checkout):
    bin_dir = fake_gcloud(tmp_path, {"r/kfkit-runtime:1": "HIGH\\tprojects/goog-vulnz/notes/CVE-2025-1\\n",
                                     "r/kfkit-trainer:1": "CRITICAL\\tprojects/goog-vulnz/notes/CVE-2025-2\\n"
                                                          "LOW\\tprojects/goog-vulnz/notes/CVE-2025-3\\n"})

    done = run_step(checkout, "ci/scan-images.sh", "r/kfkit-runtime:1", "r/kfkit-trainer:1",
                    PATH=f"{bin_dir}:{os.environ['PATH']}")

    assert done.returncode == 1, done.stdout + done.stderr
    assert "r/kfkit-trainer:1: 1 vulnerabilities at CRITICAL:" in done.stderr and "CVE-2025-2" in done.stderr
    assert "r/kfkit-runtime:1: none at CRITICAL (1 found in all)" in done.stdout


def test_the_scan_gate_passes_images_without_critical_vulnerabilities(tmp_path, checkout):
    bin_dir = fake_gcloud(tmp_path, {"r/kfkit-runtime:1": "", "r/kfkit-trainer:1": "HIGH\\tprojects/n/CVE-1\\n"})

    done = run_step(checkout, "ci/scan-images.sh", "r/kfkit-runtime:1", "r/kfkit-trainer:1",
                    PATH=f"{bin_dir}:{os.environ['PATH']}")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "r/kfkit-runtime:1: none at CRITICAL (0 found in all)" in done.stdout


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
    from kfkit.runs import publish

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


DIGESTS = {f"kfkit-{name}": "sha256:" + f"{i}" * 64 for i, name in enumerate(("runtime", "trainer", "serving"), 1)}


def test_compile_with_image_digests_names_every_image_by_digest(tmp_path, checkout):
    (tmp_path / "digests.json").write_text(json.dumps(DIGESTS))

    done = run_step(checkout, "ci/compile.sh", "europe-docker.pkg.dev/p/kfkit", "v9.9.9", str(tmp_path / "out"),
                    str(tmp_path / "digests.json"))

    assert done.returncode == 0, done.stderr
    spec = yaml.safe_load((tmp_path / "out" / "pipelines" / "training.yaml").read_text())
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {f"europe-docker.pkg.dev/p/kfkit/kfkit-runtime@{DIGESTS['kfkit-runtime']}",
                      f"europe-docker.pkg.dev/p/kfkit/kfkit-trainer@{DIGESTS['kfkit-trainer']}"}


@pytest.mark.parametrize("content, message", [
    ('{"kfkit-runtime": "sha256:abc"}', "the digest of kfkit-runtime must be sha256:<64 hex digits>, got 'sha256:abc'"),
    ('["sha256:x"]', "must hold a JSON object of image name to digest"),
    ("not json", "cannot read image digests from")])
def test_compile_refuses_a_digests_file_it_cannot_trust(tmp_path, content, message, capsys):
    from kfkit import cli

    (tmp_path / "digests.json").write_text(content)

    code = cli.main(["compile", "--output", str(tmp_path / "out"), "--no-catalog",
                     "--image-digests", str(tmp_path / "digests.json")])

    assert code == 1 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_image_missing_from_the_digests_is_refused_naming_it(tmp_path, monkeypatch):
    from kfkit.config import ConfigError, image_uri

    (tmp_path / "digests.json").write_text(json.dumps({"kfkit-runtime": DIGESTS["kfkit-runtime"]}))
    monkeypatch.setenv("KFKIT_IMAGE_DIGESTS", str(tmp_path / "digests.json"))

    assert image_uri("kfkit-runtime") == f"ghcr.io/kfkit/kfkit-runtime@{DIGESTS['kfkit-runtime']}"
    with pytest.raises(ConfigError, match="has no digest for kfkit-trainer"):
        image_uri("kfkit-trainer")


def test_a_promoted_release_is_copied_by_digest_to_the_registry_the_committed_specs_name(tmp_path, checkout):
    from kfkit import __version__

    (tmp_path / "digests.json").write_text(json.dumps(DIGESTS))
    committed = (REPO / "components" / "train" / "component.yaml").read_text()

    done = run_step(checkout, "ci/publish-public.sh", "us-docker.pkg.dev/p/kfkit", f"v{__version__}",
                    str(tmp_path / "digests.json"), DRY_RUN="true")

    assert done.returncode == 0, done.stderr
    assert f"docker buildx imagetools create --tag ghcr.io/kfkit/kfkit-trainer:{__version__} " \
           f"us-docker.pkg.dev/p/kfkit/kfkit-trainer@{DIGESTS['kfkit-trainer']}" in done.stdout
    assert f"ghcr.io/kfkit/kfkit-trainer:{__version__}" in committed  # the very name a loaded spec pulls
    [step] = [s for s in load("cloudbuild-promote.yaml")["steps"] if s["id"] == "publish-public"]
    assert step["secretEnv"] == ["GHCR_TOKEN"]
