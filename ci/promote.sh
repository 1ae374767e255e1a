#!/usr/bin/env bash
# Promote a tested, scanned release by digest: tag each image's digest `stable` (never a rebuild).
#   ci/promote.sh REGISTRY VERSION DIGESTS
set -euo pipefail
registry=$1 version=$2 digests=$3
for name in kfkit-runtime kfkit-trainer kfkit-serving; do
  digest=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$digests" "$name")
  gcloud artifacts docker tags add "$registry/$name@$digest" "$registry/$name:stable"
  echo "$registry/$name:stable -> $digest ($version)"
done
