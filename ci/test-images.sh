#!/usr/bin/env bash
# The image tests (tests marked docker) against the images this build just made, before anything is
# pushed.   ci/test-images.sh REGISTRY TAG
# The images are found by name in the local engine (built by ci/build-image.sh); nothing is rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if ! command -v docker >/dev/null; then  # Cloud Build's Python image has the engine's socket, not its CLI
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
KFKIT_TEST_IMAGES="$1:$2" "$VENV/bin/python" -m pytest -q -m docker tests/test_containers.py
