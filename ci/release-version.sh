#!/usr/bin/env bash
# A release tag must name the version being released.   ci/release-version.sh TAG   (e.g. v0.6.0)
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml)
if [ "$1" != "v$version" ]; then
  echo "tag $1 does not release this commit's kfkit $version (expected v$version)" >&2
  exit 1
fi
echo "releasing kfkit $version"
