#!/usr/bin/env bash
# Build one kfkit image into the local engine; pushing is Cloud Build's (`images:`, with provenance).
#   ci/build-image.sh NAME REGISTRY TAG [EXTRA_TAG]      NAME: runtime | trainer | trainer-gpu | serving
# Each Dockerfile installs its dependencies from its lock file (ci/locks/) in a stage of its own and
# kfkit's wheel last: a source-only change rebuilds the last layer, not TensorFlow.
# BUILD_CACHE=registry (Cloud Build on main and releases): BuildKit reads and writes every stage's
# layers, the dependency stage's included, at REGISTRY/kfkit-NAME:buildcache (mode=max), because a
# CI worker starts with an empty cache; BUILD_CACHE=registry-read (pull requests) only reads it.
# Without BUILD_CACHE the local engine's own cache keeps the stages (a laptop, this project's CI).
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1 registry=$2 tag=$3 extra_tag=${4:-latest}
image="$registry/kfkit-$name"
dockerfile="containers/runtime/Dockerfile"
args=()
case "$name" in
  # one Dockerfile, one lock file each (ci/locks/NAME.txt): TensorFlow only in the trainers' locks
  runtime|trainer|trainer-gpu) args+=(--build-arg "LOCK=$name") ;;
  # a few layers on the trainer just built, which only the local engine holds: no registry cache
  serving) dockerfile="containers/serving/Dockerfile"
           args+=(--build-arg "TRAINER_IMAGE=$registry/kfkit-trainer:$tag"); BUILD_CACHE= ;;
  *) echo "unknown image $name (runtime, trainer, trainer-gpu or serving)" >&2; exit 2 ;;
esac
case "${BUILD_CACHE:-}" in
  registry|registry-read)
    cache=(--cache-from "type=registry,ref=$image:buildcache")
    [ "$BUILD_CACHE" = registry ] && cache+=(--cache-to "type=registry,ref=$image:buildcache,mode=max")
    docker buildx inspect kfkit >/dev/null 2>&1 || docker buildx create --name kfkit --driver docker-container >/dev/null
    docker buildx build --builder kfkit --load -f "$dockerfile" "${args[@]}" "${cache[@]}" \
      -t "$image:$tag" -t "$image:$extra_tag" . ;;
  "") docker build -f "$dockerfile" "${args[@]}" -t "$image:$tag" -t "$image:$extra_tag" . ;;
  *) echo "BUILD_CACHE must be registry, registry-read or empty, got $BUILD_CACHE" >&2; exit 2 ;;
esac
