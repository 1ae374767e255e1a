#!/usr/bin/env bash
# Copy a promoted release's images, by digest, to the public registry the committed component specs
# name (ghcr.io/kfkit/kfkit-NAME:X.Y.Z), so a spec loaded by URL runs anywhere.
#   ci/publish-public.sh REGISTRY VERSION DIGESTS [PUBLIC_REGISTRY]
# GHCR_TOKEN (Secret Manager, see cloudbuild-promote.yaml) logs in; DRY_RUN=true prints the copies.
set -euo pipefail
registry=$1 version=$2 digests=$3 public=${4:-ghcr.io/kfkit}
tag=${version#v}  # the specs name the bare version: kfkit-runtime:0.6.0
run() { if [ "${DRY_RUN:-false}" = "true" ]; then echo "$*"; else "$@"; fi; }
if [ "${DRY_RUN:-false}" != "true" ]; then
  printf '%s' "$GHCR_TOKEN" | docker login "${public%%/*}" -u kfkit --password-stdin >/dev/null
fi
for name in kfkit-runtime kfkit-trainer kfkit-serving; do
  digest=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$digests" "$name")
  # a manifest copy: the same digest in the public registry, nothing rebuilt
  run docker buildx imagetools create --tag "$public/$name:$tag" "$registry/$name@$digest"
done
