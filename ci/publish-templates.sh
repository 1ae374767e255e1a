#!/usr/bin/env bash
# Upload the compiled pipeline templates to an Artifact Registry Kubeflow Pipelines repository,
# tagged with the commit and the branch.   ci/publish-templates.sh HOST COMMIT BRANCH [BUILD_DIR]
# HOST: https://REGION-kfp.pkg.dev/PROJECT/REPOSITORY. DRY_RUN=true prints what it would upload.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
"$VENV/bin/python" -m kfkit.runs.publish --host "$1" --tag "$2" --tag "${3:-unknown-branch}" \
  --build-dir "${4:-build}" ${DRY_RUN:+--dry-run}
