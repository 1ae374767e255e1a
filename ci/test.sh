#!/usr/bin/env bash
# Unit and local-pipeline tests (the image tests run where a Docker engine is: see ci/build-image.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
"$VENV/bin/python" -m pytest -q -m "not docker" "$@"
