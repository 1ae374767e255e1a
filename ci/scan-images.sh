#!/usr/bin/env bash
# Gate on known vulnerabilities: scan each local image with Artifact Analysis on-demand scanning and
# fail when any has a CRITICAL one.   ci/scan-images.sh IMAGE [IMAGE ...]
# Needs roles/ondemandscanning.admin (docs/ci.md). SEVERITY_GATE (default CRITICAL) names the
# severities that fail the build, comma-separated.
set -euo pipefail
gate=${SEVERITY_GATE:-CRITICAL}
failed=0
for image in "$@"; do
  scan=$(gcloud artifacts docker images scan "$image" --location="${SCAN_LOCATION:-us}" --format='value(response.scan)')
  found=$(gcloud artifacts docker images list-vulnerabilities "$scan" --location="${SCAN_LOCATION:-us}" \
    --format='value(vulnerability.effectiveSeverity,noteName)')
  blocking=$(printf '%s\n' "$found" | awk -v gate=",$gate," 'NF && index(gate, "," $1 ",")')
  if [ -n "$blocking" ]; then
    echo "$image: $(printf '%s\n' "$blocking" | wc -l) vulnerabilities at $gate:" >&2
    printf '%s\n' "$blocking" | sed 's/^/  /' >&2
    failed=1
  else
    echo "$image: none at $gate ($(printf '%s\n' "$found" | grep -c . || true) found in all)"
  fi
done
exit $failed
