"""Run a pipeline's steps in their own kfkit images on a local Docker engine (kfp.local DockerRunner).

The steps share what they share on Vertex or Kubeflow through services; here it is the local root
(warehouse, registry, endpoints, run artifacts), bind-mounted into every container at the same
path, so an artifact's path means the same thing inside and outside. Containers run as the calling
user, so what they write stays the user's own. A registry server (MLFLOW_TRACKING_URI) is reached
through the host's network.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kfkit.errors import KfkitError

# passed through to every step: what chooses and reaches the shared registry, and kfkit's own settings
PASSED_PREFIXES = ("MLFLOW_", "KFKIT_")
ENGINE_HINT = ("start one (in a kfkit checkout: `containers/local-engine.sh start`, then export the "
               "DOCKER_HOST it prints) or point DOCKER_HOST at a running engine")


def step_images(pipeline) -> list[str]:
    """Every image the pipeline's steps name, in the compiled spec's order, without repeats."""
    from google.protobuf import json_format

    deployment = json_format.MessageToDict(pipeline.pipeline_spec.deployment_spec)
    images = []
    for executor in deployment.get("executors", {}).values():
        image = executor.get("container", {}).get("image")
        if image and image not in images:
            images.append(image)
    return images


def engine():
    """A client of the Docker engine DOCKER_HOST names, or a KfkitError saying how to get one."""
    try:
        import docker
    except ImportError as exc:
        raise KfkitError("--runner docker needs the Docker SDK for Python: pip install 'kfkit[docker]'") from exc
    where = os.environ.get("DOCKER_HOST", "the default socket")
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure to reach the engine reads the same to the user
        raise KfkitError(f"no Docker engine answers at {where} ({exc.__class__.__name__}); {ENGINE_HINT}") from exc
    return client


def check_images(client, images: list[str]) -> None:
    """Refuse before the first step when an image is missing: kfp.local would try to pull it."""
    import docker

    missing = []
    for image in images:
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            missing.append(image)
    if missing:
        builds = "; ".join(f"PUSH=false ci/build-image.sh {_image_name(m)} {_registry(m)} {_tag(m)}" for m in missing)
        raise KfkitError(
            f"the Docker engine lacks {len(missing)} image(s) this pipeline's steps run in: {', '.join(missing)}. "
            f"Pull them, or build them in a kfkit checkout (runtime first, then trainer): {builds}. "
            "KFKIT_IMAGE_REGISTRY and KFKIT_IMAGE_TAG choose other images.")


def _registry(image: str) -> str:
    return image.rsplit("/", 1)[0] if "/" in image else ""


def _image_name(image: str) -> str:
    return image.rsplit("/", 1)[-1].split(":")[0].removeprefix("kfkit-")


def _tag(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def container_settings(root: Path, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """docker run settings for every step: the local root at its own path, the caller's uid and gid,
    kfkit's and MLflow's environment, and the host's network when a registry server is used."""
    from docker.types import Mount

    environ = dict(os.environ if environ is None else environ)
    passed = {k: v for k, v in environ.items() if k.startswith(PASSED_PREFIXES)}
    # the caller's uid usually has no home in the image
    passed |= {"KFKIT_LOCAL_ROOT": str(root), "HOME": "/tmp"}
    settings: dict[str, Any] = {
        "mounts": [Mount(target=str(root), source=str(root), type="bind")],
        "user": f"{os.getuid()}:{os.getgid()}",
        "environment": passed,
    }
    if environ.get("MLFLOW_TRACKING_URI", "").startswith(("http://", "https://")):
        settings["network_mode"] = "host"
    return settings


def runner(pipeline, root: Path):
    """kfp.local's DockerRunner for this pipeline, after checking the engine and the images."""
    import logging

    from kfp import local

    # it announces its pip-install concurrency at INFO, before the run's first line
    logging.getLogger("kfp.local.pip_install_manager").setLevel(logging.WARNING)
    client = engine()
    try:
        check_images(client, step_images(pipeline))
    finally:
        client.close()
    return local.DockerRunner(**container_settings(root))
