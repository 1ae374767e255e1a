#!/usr/bin/env bash
# Refresh the lock files (ci/locks/*.txt): every dependency pinned with its hashes, resolved by uv
# for CPython 3.11 on x86_64 Linux. `make lock` runs this; commit what it writes.
#   dev.txt          the CI and laptop venv (ci/install.sh): every extra but the GPU one
#   runtime.txt      the runtime image: kfkit's dependencies and the registry (MLflow)
#   trainer.txt      the CPU trainer image: + tensorflow-cpu
#   trainer-gpu.txt  the GPU trainer image: + CUDA tensorflow instead
# The image locks are resolved under dev.txt as constraints, so a package every lock has is the same
# version in each: what the tests run is what the images ship.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=${UV_VERSION:-0.13.9}
uv=${UV:-}
if [ -z "$uv" ]; then
  tools=${TMPDIR:-/tmp}/kfkit-uv-$UV_VERSION
  [ -x "$tools/bin/uv" ] || { python3 -m venv "$tools" && "$tools/bin/pip" install --quiet "uv==$UV_VERSION"; }
  uv="$tools/bin/uv"
fi
# the host's certificate store (a proxy's CA where there is one), not uv's bundled roots
export UV_NATIVE_TLS=1
compile() {
  local out=$1; shift
  "$uv" pip compile pyproject.toml --quiet --generate-hashes --python-version 3.11 \
    --python-platform x86_64-manylinux_2_28 --custom-compile-command "ci/lock.sh" -o "ci/locks/$out" "$@"
}
mkdir -p ci/locks
compile dev.txt --extra dev
compile runtime.txt --extra registry --constraint ci/locks/dev.txt
compile trainer.txt --extra registry --extra train --constraint ci/locks/dev.txt
compile trainer-gpu.txt --extra registry --extra train-gpu --constraint ci/locks/dev.txt
echo "wrote ci/locks/{dev,runtime,trainer,trainer-gpu}.txt"
