#!/usr/bin/env bash
# Submit the training pipeline when RUN_PIPELINE=true and wait for it: a failed run exits non-zero.
#   ci/run-pipeline.sh PROJECT REGION PIPELINE_ROOT SERVICE_ACCOUNT [TEMPLATE]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if [ "${RUN_PIPELINE:-false}" != "true" ]; then
  echo "RUN_PIPELINE is not true: not submitting"
  exit 0
fi
"$VENV/bin/kfkit" submit training --project "$1" --region "$2" --pipeline-root "$3" --service-account "$4" \
  ${5:+--template "$5"} --wait --param backend=bigquery --param "project=$1" --param "region=$2" \
  ${SHORT_SHA:+--param "git_commit=$SHORT_SHA"}
