#!/usr/bin/env bash
# `make push REGISTRY=host[:port]/path`: pushes the images `make images` built (from the local
# containers store) to REGISTRY/<name>:<tag> and prints "<name> <reference>@<digest>" per
# image. Log in first (buildah login) for a registry that wants credentials.
#
#   REGISTRY      where to push (required), e.g. ghcr.io/me or 127.0.0.1:5000/kubecrawl
#   IMAGE_PREFIX  IMAGE_TAG IMAGES  as for `make images` (what was built)
#   TLS_VERIFY    false for a plain-HTTP registry (default true)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ -n "${REGISTRY:-}" ] || { echo "[push] error: set REGISTRY, e.g. make push REGISTRY=ghcr.io/me" >&2; exit 2; }
prefix=${IMAGE_PREFIX:-ghcr.io/kubecrawl}
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$root/Cargo.toml")
tag=${IMAGE_TAG:-$version}
images=${IMAGES:-kubecrawl-operator kubecrawl-worker kubecrawl-render-worker kubecrawl titles-worker}
digests=$(mktemp)
trap 'rm -f "$digests"' EXIT
for i in $images; do
  src=$prefix/$i:$tag
  dst=${REGISTRY%/}/$i:$tag
  buildah --storage-driver vfs push --quiet --tls-verify="${TLS_VERIFY:-true}" --digestfile "$digests" \
    "$src" "docker://$dst" || { echo "[push] error: could not push $src to $dst (make images first?)" >&2; exit 1; }
  echo "$i ${dst%:*}@$(cat "$digests")"
done
