#!/usr/bin/env bash
# Compile every pipeline with the images of this build.   ci/compile.sh REGISTRY TAG [OUTPUT] [DIGESTS]
# DIGESTS: a JSON file from ci/image-digests.sh; the templates then name each image by its digest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
"$VENV/bin/kfkit" compile --output "${3:-build}" --image-registry "$1" --image-tag "$2" --no-catalog \
  ${4:+--image-digests "$4"}
