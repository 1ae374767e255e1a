"""The lock files (ci/locks/, written by ci/lock.sh) and the images built from them.

What CI tests must be what ships: the CI venv and every image install pinned versions with their
hashes, the same version of a package everywhere, in sync with pyproject.toml. And one TensorFlow
per trainer image: `tensorflow-cpu` and `tensorflow` install the same package directory, so an image
that asked for both would get whichever pip wrote last.
"""

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
LOCKS = {"dev": ["dev"], "runtime": ["registry"], "trainer": ["registry", "train"],
         "trainer-gpu": ["registry", "train-gpu"]}
TENSORFLOWS = {"tensorflow", "tensorflow-cpu"}
LINUX = {"sys_platform": "linux", "platform_system": "Linux", "python_version": "3.11", "extra": ""}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: str) -> dict[str, str]:
    text = (REPO / "ci" / "locks" / f"{lock}.txt").read_text()
    return {canonical(name): version for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.M)}


def requirements(extras: list[str]) -> list[Requirement]:
    """pyproject's dependencies and these extras, kfkit's own `kfkit[...]` extras expanded."""
    found = [Requirement(r) for r in PROJECT["dependencies"]]
    for extra in extras:
        for item in PROJECT["optional-dependencies"][extra]:
            requirement = Requirement(item)
            if requirement.name == "kfkit":
                found += [r for r in requirements(sorted(requirement.extras)) if r not in found]
            else:
                found.append(requirement)
    return found


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_requirement_of_the_lock_is_pinned_within_its_range_in_pyproject(lock):
    pinned = pins(lock)

    stale = [str(r) for r in requirements(LOCKS[lock]) if (r.marker is None or r.marker.evaluate(LINUX))
             and not r.specifier.contains(pinned.get(canonical(r.name), "0.0.0.dev0"), prereleases=True)]

    assert stale == [], f"ci/locks/{lock}.txt is stale for {stale}: run `make lock`"


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_pin_carries_its_hashes(lock):
    text = (REPO / "ci" / "locks" / f"{lock}.txt").read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", text.split("\n", 2)[2])

    assert entries and all("--hash=sha256:" in entry for entry in entries)


def test_a_package_has_the_same_version_in_every_lock():
    every = {lock: pins(lock) for lock in LOCKS}

    differing = {name: {lock: p[name] for lock, p in every.items() if name in p}
                 for name in set().union(*every.values())
                 if len({p[name] for p in every.values() if name in p}) > 1}

    assert differing == {}


@pytest.mark.parametrize("lock, expected", [("dev", {"tensorflow-cpu"}), ("runtime", set()),
                                            ("trainer", {"tensorflow-cpu"}), ("trainer-gpu", {"tensorflow"})])
def test_each_lock_has_one_tensorflow_at_most_and_the_gpu_one_only_cuda_tensorflow(lock, expected):
    assert set(pins(lock)) & TENSORFLOWS == expected


def test_the_gpu_lock_brings_tensorflows_cuda_libraries():
    assert any(name.startswith("nvidia-cudnn") for name in pins("trainer-gpu"))
    assert not any(name.startswith("nvidia-") for name in pins("trainer"))


def test_images_install_their_lock_with_hashes_then_kfkit_alone():
    dockerfile = (REPO / "containers" / "runtime" / "Dockerfile").read_text()
    installs = [i.strip() for i in re.findall(r"pip install [^\n\\&]*", dockerfile)]

    locked = [i for i in installs if "-r /tmp/lock.txt" in i]
    assert locked == ["pip install --no-cache-dir --require-hashes --no-deps -r /tmp/lock.txt"]
    assert "pip install --no-cache-dir --no-deps /tmp/wheel/*.whl" in installs
    # the dependency stage sees its lock and nothing of the source, so a source change leaves it cached
    deps_stage = dockerfile.split(" AS deps", 1)[1].split("FROM ", 1)[0]
    assert [line.split()[1] for line in deps_stage.splitlines() if line.startswith("COPY")] == ["ci/locks/${LOCK}.txt"]


@pytest.mark.parametrize("image", ["runtime", "trainer", "trainer-gpu"])
def test_each_image_is_built_from_the_lock_of_its_name(image):
    script = (REPO / "ci" / "build-image.sh").read_text()

    assert "runtime|trainer|trainer-gpu) args+=(--build-arg \"LOCK=$name\")" in script
    assert (REPO / "ci" / "locks" / f"{image}.txt").is_file()


def test_the_ci_venv_installs_the_dev_lock_with_hashes():
    script = (REPO / "ci" / "install.sh").read_text()

    assert "pip install --quiet --require-hashes --no-deps -r ci/locks/dev.txt" in script
    assert "pip install --quiet --no-deps --no-build-isolation -e ." in script
