#!/usr/bin/env bash
# Build one kfkit image with the last pushed tag as cache, and push it unless PUSH=false.
#   ci/build-image.sh NAME REGISTRY TAG [CACHE_TAG]      NAME: runtime | trainer | trainer-gpu | serving
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1 registry=$2 tag=$3 cache_tag=${4:-latest}
image="$registry/kfkit-$name"
dockerfile="containers/$name/Dockerfile"
args=()
case "$name" in
  trainer) args+=(--build-arg "RUNTIME_IMAGE=$registry/kfkit-runtime:$tag") ;;
  # the same Dockerfile with CUDA TensorFlow instead of tensorflow-cpu (pyproject's train-gpu extra)
  trainer-gpu) dockerfile="containers/trainer/Dockerfile"
               args+=(--build-arg "RUNTIME_IMAGE=$registry/kfkit-runtime:$tag" --build-arg TRAINER_EXTRA=train-gpu) ;;
  serving) args+=(--build-arg "TRAINER_IMAGE=$registry/kfkit-trainer:$tag") ;;
  runtime) ;;
  *) echo "unknown image $name (runtime, trainer, trainer-gpu or serving)" >&2; exit 2 ;;
esac
if [ "${PUSH:-true}" = "true" ]; then
  docker pull "$image:$cache_tag" >/dev/null 2>&1 && args+=(--cache-from "$image:$cache_tag") || true
fi
docker build -f "$dockerfile" "${args[@]}" -t "$image:$tag" -t "$image:$cache_tag" .
if [ "${PUSH:-true}" = "true" ]; then
  docker push "$image:$tag"
  docker push "$image:$cache_tag"
fi
