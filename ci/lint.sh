#!/usr/bin/env bash
# Lint, and check that the committed component specs, docs and interface lock match the code.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
"$VENV/bin/ruff" check .
"$VENV/bin/kfkit" compile --check
