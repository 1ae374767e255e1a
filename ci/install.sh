#!/usr/bin/env bash
# Create the virtual environment (if missing) and install kfkit with every extra; then lint.
# The same script runs in Cloud Build (venv in /workspace), in .ci/run and on a laptop.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip "setuptools>=77" wheel  # the build backend, for offline builds too
# exactly the locked versions, each checked against its hash (ci/lock.sh refreshes the lock), then
# kfkit itself with nothing more: what CI tests is what the images install from their own locks
"$VENV/bin/python" -m pip install --quiet --require-hashes --no-deps -r ci/locks/dev.txt
"$VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e .
"$VENV/bin/python" -m pip check
"$VENV/bin/ruff" check .
