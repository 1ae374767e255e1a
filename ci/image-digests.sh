#!/usr/bin/env bash
# The digests of a build's images, as `kfkit compile --image-digests` reads them.
#   ci/image-digests.sh REGISTRY TAG > digests.json
set -euo pipefail
registry=$1 tag=$2
printf '{'
sep=
for name in kfkit-runtime kfkit-trainer kfkit-serving; do
  digest=$(gcloud artifacts docker images describe "$registry/$name:$tag" --format='value(image_summary.digest)')
  case "$digest" in sha256:*) ;; *) echo "no digest for $registry/$name:$tag (got '$digest')" >&2; exit 1 ;; esac
  printf '%s"%s": "%s"' "$sep" "$name" "$digest"
  sep=', '
done
printf '}\n'
