"""One TensorFlow per trainer image: the CPU image from the `train` extra, the GPU image from `train-gpu`.

`tensorflow-cpu` and `tensorflow` install the same package directory, so an image that asks for
both gets whichever pip wrote last. The resolution below follows pyproject's extras through
`kfkit[...]` self-references as pip does.
"""

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
TENSORFLOWS = {"tensorflow", "tensorflow-cpu"}


def requirements(extra: str) -> set[str]:
    """Every requirement an extra brings, kfkit's own extras expanded."""
    found = set()
    for item in PROJECT["optional-dependencies"][extra]:
        if item.startswith("kfkit["):
            for inner in item[len("kfkit["):-1].split(","):
                found |= requirements(inner.strip())
        else:
            found.add(item)
    return found


def tensorflows(extra: str) -> set[str]:
    names = {re.match(r"[A-Za-z0-9_.-]+", r)[0].lower() for r in requirements(extra)}
    return names & TENSORFLOWS


def test_the_cpu_extra_brings_tensorflow_cpu_only():
    assert tensorflows("train") == {"tensorflow-cpu"}


def test_the_gpu_extra_brings_cuda_tensorflow_only():
    assert tensorflows("train-gpu") == {"tensorflow"}
    assert any(r.startswith("tensorflow[and-cuda]==") for r in requirements("train-gpu"))


def test_no_extra_asks_for_two_tensorflows():
    assert all(len(tensorflows(extra)) <= 1 for extra in PROJECT["optional-dependencies"])


def test_the_trainer_dockerfile_installs_one_extra_chosen_by_a_build_argument():
    dockerfile = (REPO / "containers" / "trainer" / "Dockerfile").read_text()
    installs = [line for line in dockerfile.splitlines() if "pip install" in line]

    assert "ARG TRAINER_EXTRA=train\n" in dockerfile
    assert installs == ['RUN /opt/kfkit/bin/pip install --no-cache-dir "/src[${TRAINER_EXTRA}]" \\']
    assert "tensorflow" not in " ".join(installs)


def test_the_gpu_image_is_built_from_the_gpu_extra():
    script = (REPO / "ci" / "build-image.sh").read_text()

    assert "trainer-gpu)" in script and "TRAINER_EXTRA=train-gpu" in script
