#!/usr/bin/env bash
# Imports the OCI archives `make images` wrote ($KC_CACHE/images/*.tar), and the stand-ins
# for the chart's dev-mode Redis and Kafka (dev-images.sh, $KC_CACHE/images/dev/*.tar), into
# the real node's containerd, where the kubelet finds them: nothing is ever pulled. Run by node-up.sh, and
# again after a new `make images` (make node-images).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/node-lib.sh"

dir=${IMAGES_DIR:-$KC_CACHE/images}
mkdir -p "$NODE_STATE/logs"
shopt -s nullglob
archives=("$dir"/*.tar "$dir"/dev/*.tar)
[ ${#archives[@]} -gt 0 ] || { log "no images in $dir yet (make images)"; exit 0; }
for a in "${archives[@]}"; do
  # ctr warns on stderr at every call that cgroup v1 is deprecated: keep that out of the way.
  "$KC_CACHE/bin/ctr" images import "$a" >/dev/null 2>>"$NODE_STATE/logs/ctr.log" \
    || die "could not import $a (see $NODE_STATE/logs/ctr.log)"
done
log "imported into the node: $("$KC_CACHE/bin/ctr" images ls -q 2>/dev/null | grep -v '^sha256:' | grep -v '@sha256:' | tr '\n' ' ')"
