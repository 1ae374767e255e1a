"""Image builds before and after the lock-file Dockerfiles: size, and the rebuild after a source-only change.

    python benchmarks/images.py --before REV      (needs a Docker engine: containers/local-engine.sh start)

Both variants are built from clean copies of the repository (`git archive`): BEFORE at REV (a commit
whose trainer built FROM the runtime image), AFTER from the working tree. Each is built once (its
time depends on what the engine's cache already held: not a comparison), which warms the cache as a
developer's machine or a CI worker with a registry cache would be; then one line is appended to a
kfkit source file and the runtime and trainer images are built again: that second build is what
every commit pays. Printed side by side with the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMAGES = ("runtime", "trainer")


def docker(*args: str, check: bool = True) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check).stdout


def export(rev: str | None, into: Path) -> Path:
    """A clean copy of the repository at rev (None: the working tree's tracked and new files)."""
    into.mkdir(parents=True)
    if rev:
        data = subprocess.run(["git", "archive", rev], cwd=REPO, capture_output=True, check=True).stdout
    else:
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                               check=True).stdout.decode().split("\0")
        archive = into.parent / f"{into.name}.tar"
        with tarfile.open(archive, "w") as tar:
            for name in filter(None, files):
                if (REPO / name).exists():
                    tar.add(REPO / name, arcname=name)
        data = archive.read_bytes()
    with tempfile.NamedTemporaryFile(suffix=".tar") as handle:
        handle.write(data)
        handle.flush()
        with tarfile.open(handle.name) as tar:
            tar.extractall(into, filter="data")
    return into


def build(tree: Path, registry: str, tag: str) -> float:
    started = time.perf_counter()
    for name in IMAGES:
        subprocess.run([str(tree / "ci" / "build-image.sh"), name, registry, tag], cwd=tree, capture_output=True,
                       check=True, env=dict(os.environ, PUSH="false"))
    return time.perf_counter() - started


def size(image: str) -> int:
    return int(json.loads(docker("image", "inspect", image, "--format", "{{json .Size}}")))


def measure(label: str, rev: str | None, scratch: Path) -> dict:
    tree = export(rev, scratch / label)
    registry, tag = f"bench-{label}/kfkit", "bench"
    first = build(tree, registry, tag)
    with open(tree / "kfkit" / "config.py", "a") as handle:
        handle.write(f"# a source-only change {time.time()}\n")
    again = build(tree, registry, tag)
    return {"first": first, "rebuild": again, **{name: size(f"{registry}/kfkit-{name}:{tag}") for name in IMAGES}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", required=True, help="a revision with the old Dockerfiles (f249092)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        before = measure("before", args.before, Path(tmp))
        after = measure("after", None, Path(tmp))
    gb = 1e9
    print(f"{'':38}{'before':>12}{'after':>12}{'after/before':>14}")
    rows = [("rebuild after a source-only change (s)", "rebuild", 1), ("first build, engine cache as found (s)", "first", 1),
            ("runtime image size (GB)", "runtime", gb), ("trainer image size (GB)", "trainer", gb)]
    for title, key, unit in rows:
        print(f"{title:38}{before[key] / unit:12.2f}{after[key] / unit:12.2f}{after[key] / before[key]:14.2f}")


if __name__ == "__main__":
    main()
